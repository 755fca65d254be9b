// The grid group of a cooperative launch: sync() is a barrier over every thread of the launch.
#pragma once

#include "emu.h"

namespace cooperative_groups {

struct grid_group {
  void sync() const { emu::grid_sync(); }
};

inline grid_group this_grid() { return {}; }

}  // namespace cooperative_groups
