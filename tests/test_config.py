import json

import pytest

from hw.config import (Config, PipelineConfig, ConfigError, PEArrayConfig, PRESETS, apply_overrides, load_toml,
                       parameter_keys, preset)


def test_presets():
    assert preset("default") == Config()
    small = preset("small")
    assert small.name == "small" and (small.pe.rows, small.pe.cols) == (2, 3)
    assert set(PRESETS) >= {"default", "small"}


def test_acc_width():
    assert PEArrayConfig(max_k=4096).acc_width == 44
    assert PEArrayConfig(max_k=64).acc_width == 38


def test_json_round_trip():
    config = apply_overrides(preset("small"), ["pe.precisions=[8, 16]", "clock_mhz=200"])
    assert Config.from_dict(json.loads(config.to_json())) == config


def test_overrides():
    config = apply_overrides(Config(), ["pe.rows=4", "pe.cols=2", "name=tiny"])
    assert (config.pe.rows, config.pe.cols, config.name) == (4, 2, "tiny")
    assert config.pe.max_k == Config().pe.max_k


@pytest.mark.parametrize("override, message", [
    ("pe.rows=0", "pe.rows must be an integer >= 1, not 0"),
    ("pe.rows=x", "pe.rows must be an integer, not 'x'"),
    ("pe.rows=true", "pe.rows must be an integer, not True"),
    ("pe.max_k=100", "pe.max_k must be a power of two, not 100"),
    ("pe.drain_buffers=3", "pe.drain_buffers must be 1 or 2, not 3"),
    ("pe.drain_buffers=0", "pe.drain_buffers must be an integer >= 1, not 0"),
    ("pe.drain_rows=65", "pe.drain_rows must be at most 64, not 65"),
    ("pe.drain_rows=0", "pe.drain_rows must be an integer >= 1, not 0"),
    ("pe.precisions=[5]", "pe.precisions entries must be one of [4, 8, 12, 16], not 5"),
    ("pe.precisions=[8, 8]", "pe.precisions must not repeat a width"),
    ("pe.precisions=[]", "pe.precisions must be a non-empty list"),
    ("pe.foo=1", "unknown parameter 'pe.foo'"),
    ("bogus=1", "unknown parameter 'bogus'"),
    ("pe=3", "pe must be a table"),
    ("clock_mhz=0", "clock_mhz must be a number in (0, 10000]"),
    ("name=a/b", "name must be a non-empty string"),
    ("pe.rows", "--set takes key=value"),
    ("fp8.k=12", "fp8.k must be a power of two, not 12"),
    ("fp8.k=1", "fp8.k must be an integer >= 2, not 1"),
    ("fp8.k=512", "fp8.k must be at most 256, not 512"),
    ("tsram.n=6", "tsram.n must be a power of two, not 6"),
    ("tsram.n=1", "tsram.n must be an integer >= 2, not 1"),
    ("tsram.width=0", "tsram.width must be an integer >= 1, not 0"),
    ("tsram.tiles=0", "tsram.tiles must be an integer >= 1, not 0"),
    ("dfa.width=1", "dfa.width must be an integer >= 2, not 1"),
    ("dfa.classes=0", "dfa.classes must be an integer >= 1, not 0"),
    ("pdfa.max_layers=0", "pdfa.max_layers must be an integer >= 1, not 0"),
    ("pdfa.counter_width=65", "pdfa.counter_width must be at most 64, not 65"),
    ('pdfa.precisions=["fp16"]', "pdfa.precisions must be a non-empty list of distinct names from"),
    ("sparsity.slots=64", "sparsity.window must be at least sparsity.slots (64), not 32"),
    ("sparsity.width=1", "sparsity.width must be an integer >= 2, not 1"),
    ("sparsity.slice_bits=6", "sparsity.slice_bits must be one of [4, 8, 12, 16], not 6"),
    ("sparsity.slice_slots=8", "sparsity.slice_slots must be at least 16 for 16-bit operands, not 8"),
])
def test_override_wrong(override, message):
    with pytest.raises(ConfigError, match=None) as info:
        apply_overrides(Config(), [override])
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_load_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "small"\nname = "mine"\n[pe]\nrows = 4\n')
    config = load_toml(path)
    assert (config.name, config.pe.rows, config.pe.cols) == ("mine", 4, 3)


@pytest.mark.parametrize("text, message", [
    ("[pe\n", "is not valid TOML"),
    ('preset = "huge"\n', "preset must be one of"),
    ("[pe]\ncolumns = 3\n", "unknown parameter 'pe.columns'"),
    ("[pe]\nrows = -1\n", "pe.rows must be an integer >= 1"),
    ("[pipeline]\npe = 99\n", 'pipeline.pe must be "auto" or an integer from 0 to'),
    ("[pipeline]\npe = \"fast\"\n", 'pipeline.pe must be "auto" or an integer from 0 to'),
])
def test_load_toml_wrong(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_toml(path)
    assert message in str(info.value)


def test_load_toml_missing(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "nope.toml")


def test_parameter_keys():
    assert parameter_keys() == ["clock_mhz", "core.act_tiles", "core.max_batch", "core.max_width", "core.tile",
                                "core.weight_tiles", "dfa.classes", "dfa.max_rows", "dfa.width", "fp8.k", "name",
                                "pdfa.counter_width", "pdfa.max_layers", "pdfa.precisions", "pdfa.sample_width",
                                "pdfa.size_width", "pe.cols", "pe.drain_buffers", "pe.drain_rows", "pe.max_k", "pe.precisions", "pe.rows",
                                "pipeline.dfa_ep", "pipeline.fp8_tree", "pipeline.output_error", "pipeline.pe", "pipeline.slice_skip",
                                    "pipeline.weight_update", "pipeline.zero_skip",
                                    "sparsity.depth", "sparsity.mask_lanes", "sparsity.max_rows", "sparsity.slice_bits",
                                "sparsity.slice_pairs", "sparsity.slice_slots", "sparsity.slots", "sparsity.weight_width", "sparsity.width",
                                "sparsity.window", "sparsity.zvc_n", "sparsity.zvc_width",
                                "tsram.n", "tsram.tiles", "tsram.width"]


@pytest.mark.parametrize("overrides, message", [
    (["core.tile=6"], "core.tile must be a power of two, not 6"),
    (["core.tile=2"], "core.tile must be an integer >= 4, not 2"),
    (["core.weight_tiles=100"], "core.weight_tiles must be a power of two, not 100"),
    (["core.max_width=5000"], "core.max_width must be at most 4096"),
    (["pe.max_k=64"], "core.max_width and core.max_batch must be at most pe.max_k (64)"),
    (["pdfa.size_width=7"], "core.max_width must fit pdfa.size_width (7 bits), not 128"),
])
def test_core_config_wrong(overrides, message):
    with pytest.raises(ConfigError) as info:
        apply_overrides(preset("default"), overrides)
    assert message in str(info.value)


def test_stages_auto_follows_the_clock():
    from hw.pipeline import BLOCK_MODULES, GUARD_BAND, auto_stages, stage_delays
    for block in BLOCK_MODULES:
        delays = stage_delays(block)
        for depth, ns in enumerate(delays):
            # A clock just slow enough for this depth (its guard band included) places it, unless a
            # shallower depth fits too; a clock slightly faster does not.
            want = next(d for d, t in enumerate(delays) if t <= ns)
            mhz = 1000.0 * (1 - GUARD_BAND) / ns
            assert auto_stages(block, mhz) == want
            assert Config(clock_mhz=mhz).stages(block) == want
            if want == depth and depth < len(delays) - 1:
                assert auto_stages(block, mhz * 1.001) > depth
        assert auto_stages(block, 1000.0 / (min(delays) / 2)) == len(delays) - 1    # none fits: the deepest
        assert Config(pipeline=PipelineConfig(**{block: 0})).stages(block) == 0
