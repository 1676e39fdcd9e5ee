import subprocess
import sys
import textwrap

import pytest

from benchkit.errors import ConfigError
from benchkit.registry import BACKBONES, HEADS, Registry, import_plugins


def test_decorator_registers_and_duplicate_needs_force():
    reg = Registry("widget", "benchkit", "benchkit.none")

    @reg.register("a")
    def a():
        return 1

    with pytest.raises(ValueError, match="already registered"):
        @reg.register("a")
        def a2():
            return 2

    @reg.register("a", force=True)
    def a3():
        return 3

    assert reg.get("a")() == 3


def test_unknown_name_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'regression'"):
        HEADS.get("regresion")
    with pytest.raises(ConfigError, match="did you mean 'tiny_cnn'"):
        BACKBONES.get("tiny_cn")


def test_prefix_adapter_receives_full_name():
    reg = Registry("widget", "benchkit", "benchkit.none")

    @reg.register("lib", prefix=True)
    def from_lib(full_name, **kw):
        return full_name, kw

    assert reg.create("lib:thing", x=1) == ("lib:thing", {"x": 1})
    assert "lib:anything" in reg


def test_names_filter_with_fnmatch():
    assert "tiny_cnn" in BACKBONES.names("tiny*")
    assert BACKBONES.names("zzz*") == []


def test_plugin_file_is_imported_once_and_missing_file_is_config_error(tmp_path, monkeypatch):
    counted = tmp_path / "counted_head.py"
    counted.write_text(textwrap.dedent("""
        import builtins
        from benchkit import register_head
        from benchkit.heads.regression import RegressionHead

        builtins.counted_head_imports = getattr(builtins, "counted_head_imports", 0) + 1

        @register_head("counted_head")
        class CountedHead(RegressionHead):
            pass
    """))
    monkeypatch.setattr("builtins.counted_head_imports", 0, raising=False)
    import_plugins([str(counted)])
    first = HEADS.get("counted_head")
    import_plugins([str(counted)])
    import_plugins(["counted_head.py"], tmp_path)  # the same file named relative to an experiment's folder
    import builtins
    assert builtins.counted_head_imports == 1
    assert HEADS.get("counted_head") is first  # a second execution would have failed as a duplicate name

    plugin = tmp_path / "my_head.py"
    plugin.write_text(textwrap.dedent("""
        from benchkit import register_head
        from heads_for_test_only import nothing  # noqa
    """))
    with pytest.raises(ConfigError, match=r"my_head\.py failed to import, line 3: ModuleNotFoundError"):
        import_plugins([str(plugin)])  # the plugin's own import error, named with its file and line
    with pytest.raises(ConfigError, match="plugin file not found"):
        import_plugins(["missing_plugin.py"], tmp_path)
    with pytest.raises(ConfigError, match="cannot be imported"):
        import_plugins(["no_such_module_xyz"])


def test_entry_point_plugin_registers_through_installed_metadata(tmp_path):
    """A package that declares a `benchkit.backbones` entry point is found without any import by the user."""
    pkg = tmp_path / "src"
    (pkg / "bk_ep_demo").mkdir(parents=True)
    (pkg / "bk_ep_demo" / "__init__.py").write_text(textwrap.dedent("""
        from torch import nn
        from benchkit import register_backbone
        from benchkit.models.backbone import Backbone

        @register_backbone("ep_linear")
        def ep_linear():
            body = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))
            return Backbone(body, 4, stages=[body[2]])
    """))
    dist = pkg / "bk_ep_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bk-ep-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[benchkit.backbones]\nep_linear = bk_ep_demo\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from benchkit.registry import BACKBONES;"
            "b = BACKBONES.create('ep_linear'); print(type(b).__name__, b.num_features)")
    out = subprocess.run([sys.executable, "-c", code, str(pkg)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Backbone 4"


def test_a_dataset_format_must_have_a_read_method():
    from benchkit import register_dataset_format
    with pytest.raises(TypeError, match="no read"):
        @register_dataset_format("no_reader")
        class NoReader:
            pass
    from benchkit.registry import DATASET_FORMATS
    assert "no_reader" not in DATASET_FORMATS.names() and "csv" in DATASET_FORMATS.names()
