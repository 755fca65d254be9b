"""Stand-in for transformers' tests/exporters/test_export.py, which its source distribution does not ship:
export is tested in tests/test_export.py."""


class ExportTesterMixin:
    pass
