"""Tests of the verification-strength measurement (:mod:`verif.mutation`, ``scripts/verify_strength.py``):
coverage.dat parsing, the score with justified equivalents, argument errors, and one end-to-end run."""

import json

import pytest

from scripts import verify_strength
from verif import mutation


def _point(kind, line, count, name="x", file="dut.v"):
    fields = {"f": file, "l": str(line), "n": "3", "t": kind, "page": f"v_{kind}/top", "o": name, "h": "top"}
    key = "".join(f"\x01{k}\x02{v}" for k, v in fields.items())
    return f"C '{key}' {count}"


VERILOG = """module top(clk);
  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;
  reg [1:0] state;
  assign go = a & (* src = "hw/dfa_ep.py:91" *) b;
  always @(posedge clk)
    if (go) state <= 1;
    else state <= 2;
  always @* begin
    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end
    (* src = "hw/dfa_ep.py:120" *)
    casez (state)
      2'h1: y = 1;
      default: y = 0;
    endcase
  end
endmodule
"""

SAMPLE = "\n".join([
    "# SystemC::Coverage-3",
    _point("line", 6, 12, "if"),
    _point("line", 6, 0, "else"),
    _point("branch", 12, 3, "case"),
    _point("branch", 13, 0, "default"),
    _point("line", 9, 0, "if"),                                 # the backend's start-up trigger
    _point("toggle", 4, 5, "state[0]:0->1"),
    _point("toggle", 5, 0, "__024123[0]:0->1"),                 # a temporary of the backend
    _point("toggle", 4, 0, "state[1]:0->1"),
    _point("toggle", 2, 0, "__024auto__024verilog_backend__046cc[0]:0->1"),
    "",
])


def test_parse_coverage():
    points = mutation.parse_coverage(SAMPLE)
    assert len(points) == 9
    assert points[0].fields == {"f": "dut.v", "l": "6", "n": "3", "t": "line", "page": "v_line/top", "o": "if",
                                "h": "top"}
    assert points[0].count == 12 and points[1].count == 0
    assert [p.kind for p in points] == ["line", "line", "branch", "branch", "line", *["toggle"] * 4]


def test_parse_coverage_kind_from_page():
    text = "C '\x01f\x02a.v\x01l\x024\x01page\x02v_toggle/top\x01o\x02q[0]' 0\n"
    (point,) = mutation.parse_coverage(text)
    assert point.kind == "toggle" and point.count == 0


def test_coverage_summary():
    summary = mutation.coverage_summary(mutation.parse_coverage(SAMPLE), VERILOG)
    assert summary["line_points"] == 4 and summary["toggle_points"] == 2     # the trigger's points left out
    assert summary["line_coverage"] == 0.5
    assert summary["toggle_coverage"] == 0.5
    assert summary["uncovered"] == [
        {"line": 6, "verilog": "if (go) state <= 1;", "src": "hw/dfa_ep.py:91", "what": "else"},
        {"line": 13, "verilog": "default: y = 0;", "src": "hw/dfa_ep.py:120", "what": "default"},
    ]


def test_coverage_summary_waivers():
    points = mutation.parse_coverage(SAMPLE)
    # The `else` of line 6 waived: out of the count (3 of 4 line points left, 2 hit).
    waiver = mutation.Waiver("top", "hw/dfa_ep.py:91", "else", "never idle")
    summary = mutation.coverage_summary(points, VERILOG, [waiver])
    assert summary["line_coverage"] == round(2 / 3, 4) and summary["line_coverage_raw"] == 0.5
    assert summary["line_waived"] == 1
    assert summary["waivers"] == [{"scope": "top", "src": "hw/dfa_ep.py:91", "what": "else", "why": "never idle",
                                   "points": 1, "contradicted": 0}]
    assert [u["line"] for u in summary["uncovered"]] == [13]
    # A waiver that takes a hit point (the `if` of line 6) is contradicted and not applied.
    wrong = mutation.Waiver("top", "hw/dfa_ep.py:91", "", "unreachable")
    summary = mutation.coverage_summary(points, VERILOG, [wrong])
    assert summary["line_coverage"] == 0.5 and summary["line_waived"] == 0
    assert summary["waivers"][0]["points"] == 2 and summary["waivers"][0]["contradicted"] == 1
    # Another instance, or another line, matches nothing.
    for other in (mutation.Waiver("top.sub", "hw/dfa_ep.py:91", "else", "x"),
                  mutation.Waiver("top", "hw/dfa_ep.py:92", "else", "x")):
        summary = mutation.coverage_summary(points, VERILOG, [other])
        assert summary["line_waived"] == 0 and summary["waivers"][0]["points"] == 0
    assert "line_coverage_raw" not in mutation.coverage_summary(points, VERILOG)


def test_waivers_file(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('[[waiver]]\nblock = "train_core"\nscope = "top.conv"\nsrc = "hw/requant.py:264"\n'
                    'what = "else"\nwhy = """never\n  stalled"""\n')
    assert mutation.load_waivers(path) == {
        "train_core": [mutation.Waiver("top.conv", "hw/requant.py:264", "else", "never stalled")]}
    assert mutation.load_waivers(tmp_path / "missing.toml") == {}
    path.write_text('[[waiver]]\nblock = "train_core"\nscope = "top"\nsrc = "hw/a.py:1"\n')
    with pytest.raises(ValueError, match="must have why"):
        mutation.load_waivers(path)


def test_waivers_file_is_valid():
    for block, waivers in mutation.load_waivers().items():
        assert block in verify_strength.BLOCKS
        for w in waivers:
            assert w.scope.startswith(verify_strength.BLOCKS[block].top) and w.src.startswith("hw/"), w


def test_score():
    assert mutation.score(45, 50, 0) == 0.9
    assert mutation.score(45, 50, 2) == 0.9375
    assert mutation.score(3, 3, 0) == 1.0
    assert mutation.score(0, 2, 2) is None
    with pytest.raises(ValueError, match="killed <= mutants - equivalent"):
        mutation.score(49, 50, 2)
    with pytest.raises(ValueError):
        mutation.score(-1, 5, 0)


def test_equivalents(tmp_path):
    path = tmp_path / "eq.toml"
    path.write_text('[[equivalent]]\nblock = "dfa_ep"\n'
                    'mutant = "mutate -ctrl mutsel 6 3 -mode inv -module m -cell $1 -port Y -portbit 0"\n'
                    'why = "the bit is never read"\n')
    assert mutation.load_equivalents(path) == {
        "dfa_ep": {"mutate -mode inv -module m -cell $1 -port Y -portbit 0": "the bit is never read"}}
    assert mutation.load_equivalents(tmp_path / "missing.toml") == {}
    # The source lines a mutant names are not part of its key: moving lines of hw/ keeps the netlist.
    path.write_text('[[equivalent]]\nblock = "dfa_ep"\n'
                    'mutant = "mutate -mode inv -module m -cell $1 -port Y -portbit 0 -src hw/x.py:7 -src hw/y.py:2"\n'
                    'why = "the bit is never read"\n')
    key = mutation.equivalence_key("mutate -ctrl mutsel 6 3 -mode inv -module m -cell $1 -port Y -portbit 0 "
                                   "-src hw/x.py:9 -src hw/y.py:2")
    assert mutation.load_equivalents(path) == {"dfa_ep": {key: "the bit is never read"}}
    assert key == "mutate -mode inv -module m -cell $1 -port Y -portbit 0"
    path.write_text('[[equivalent]]\nblock = "dfa_ep"\nmutant = "mutate -mode inv"\n')
    with pytest.raises(ValueError, match="must have why"):
        mutation.load_equivalents(path)


def test_equivalents_file_is_valid():
    table = mutation.load_equivalents()
    assert set(table) <= set(verify_strength.BLOCKS)
    for block, entries in table.items():
        for key in entries:
            assert key.startswith("mutate -mode ") and f"-module {verify_strength.BLOCKS[block].top}" in key


def test_mutant_key():
    m = mutation._parse_mutant(4, "mutate -ctrl mutsel 6 4 -mode cnot1 -module top -cell $1541 -port Q "
                                  "-portbit 4 -ctrlbit 48 -wire e[0] -wirebit 4 -src hw/dfa_ep.py:94")
    assert m.key == "mutate -mode cnot1 -module top -cell $1541 -port Q -portbit 4 -ctrlbit 48 -wire e[0] " \
                    "-wirebit 4 -src hw/dfa_ep.py:94"
    assert m.src == "hw/dfa_ep.py:94"
    assert m.fields["cell"] == "$1541" and m.fields["mode"] == "cnot1"


def test_wrapper():
    ports = [("input", "", "", "clk"), ("output", "signed", "[12:0]", "o__payload"),
             ("input", "", "[5:0]", "mutsel")]
    text = mutation.wrapper("top", "top_mutants", ports, 6)
    assert "module top(clk, o__payload);" in text
    assert "output signed [12:0] o__payload;" in text
    assert '$value$plusargs("mutsel=%d", mutsel)' in text and "reg [5:0] mutsel;" in text
    assert ".mutsel(mutsel)" in text


@pytest.mark.parametrize("argv, message", [
    (["--block", "nonesuch"], "--block must be one of"),
    (["--block", "pe"], "has no cocotb bench"),
    (["--mutants", "0"], "--mutants must be a positive integer, not 0"),
    (["--mutants", "x"], "invalid int value"),
    (["--seed", "-1"], "--seed must be a non-negative integer, not -1"),
    (["--timeout-factor", "0"], "--timeout-factor must be a positive number, not 0.0"),
    (["--preset", "huge"], "preset must be one of"),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        verify_strength.main([*argv, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker, blocker / "sub"):
        with pytest.raises(SystemExit) as exc:
            verify_strength.main(["--block", "row_skip", "--out", str(out)])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("python -m scripts.verify_strength: error: --out") and len(err.splitlines()) == 1
    assert blocker.read_text() == ""


def test_missing_out(capsys):
    with pytest.raises(SystemExit) as exc:
        verify_strength.main(["--block", "row_skip"])
    assert exc.value.code == 2


def test_bad_equivalents(tmp_path, capsys):
    bad = tmp_path / "eq.toml"
    bad.write_text("[[equivalent]]\nblock = 3\n")
    with pytest.raises(SystemExit) as exc:
        verify_strength.main(["--equivalents", str(bad), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "--equivalents" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_end_to_end(tmp_path):
    """The row skipper, three mutants: the original passes, every mutant is classified, coverage measured
    (slow: two Verilator builds and five bench runs, about a minute and a half on a loaded machine)."""
    out = tmp_path / "out"
    assert verify_strength.main(["--block", "row_skip", "--mutants", "3", "--seed", "2", "--out", str(out),
                                 "--build-dir", str(tmp_path / "build")]) == 0
    report = json.loads((out / "strength.json").read_text())
    r = report["blocks"]["row_skip"]
    assert r["mutants"] == 3
    assert r["killed"] + len(r["survived"]) + r["equivalent"] == 3
    assert r["score"] == mutation.score(r["killed"], 3, r["equivalent"])
    assert all(s["src"] and s["mutant"].startswith("mutate -mode ") for s in r["survived"])
    assert 0.5 < r["line_coverage"] <= 1 and 0.5 < r["toggle_coverage"] <= 1
    assert "| row_skip | 3 |" in (out / "strength.md").read_text()
    assert (out / "strength.png").read_bytes()[:4] == b"\x89PNG"


def test_earlier_blocks(tmp_path):
    header = {"config": "small", "seed": 1, "mutants_requested": 50, "timeout_factor": 3.0}
    path = tmp_path / "strength.json"
    assert verify_strength.earlier_blocks(path, header) == {}
    path.write_text(json.dumps({**header, "blocks": {"dfa_ep": {"score": 1.0}}}))
    assert verify_strength.earlier_blocks(path, header) == {"dfa_ep": {"score": 1.0}}
    assert verify_strength.earlier_blocks(path, {**header, "seed": 2}) == {}
    path.write_text("{")
    assert verify_strength.earlier_blocks(path, header) == {}


def test_rescore():
    survivor = {"index": 3, "mutant": "mutate -mode inv -module m -cell $1 -port Y -portbit 0", "src": "hw/x.py:1"}
    other = {"index": 4, "mutant": "mutate -mode inv -module m -cell $2 -port Y -portbit 0", "src": "hw/x.py:2"}
    report = {"blocks": {"dfa_ep": {"mutants": 10, "killed": 8, "survived": [survivor, other], "equivalents": [],
                                    "equivalent": 0, "score": 0.8}}}
    known = {"dfa_ep": {mutation.equivalence_key(survivor["mutant"]): "never read"}}
    assert verify_strength.rescore(report, known) == 1
    r = report["blocks"]["dfa_ep"]
    assert r["survived"] == [other] and r["equivalents"] == [{**survivor, "why": "never read"}]
    assert r["equivalent"] == 1 and r["score"] == mutation.score(8, 10, 1) == 0.8889


def test_rescore_without_report(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        verify_strength.main(["--rescore", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--rescore" in capsys.readouterr().err


def test_ports_skip_functions():
    # Yosys writes a function per $pmux inside the module; its inputs are not the module's ports.
    text = ("module m_mutants(a, y, mutsel);\n  input [3:0] a;\n  output y;\n  input [1:0] mutsel;\n"
            "  function [0:0] _pmux;\n    input [0:0] a;\n    input [1:0] b;\n    input [1:0] s;\n"
            "    _pmux = a;\n  endfunction\n  assign y = a[0];\nendmodule\n")
    assert [p[3] for p in mutation._ports(text, "m_mutants")] == ["a", "y", "mutsel"]
