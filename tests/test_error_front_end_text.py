"""``per_front_end`` texts in error messages: one token renders as the command-line text on the
command line and in Python, and as the REST text in REST answers, wherever the message is nested."""

from __future__ import annotations

from hwmodels.errors import TierwiseError, per_front_end, render_tokens


def test_a_front_end_text_renders_per_front_end_and_survives_nesting():
    cmd = per_front_end("`tierwise plan --model m --pin 'a.{@b}=int8'`", '`POST /v1/plans {"pins": {"a.{@b}": "int8"}}`')
    inner = TierwiseError(f"re-plan for it: {cmd}", field="kv")
    outer = TierwiseError(f"refused; {inner.template}", field="choices.g.weights")
    assert "`tierwise plan --model m --pin 'a.{@b}=int8'`" in outer.render("cli")
    assert "`tierwise plan --model m" in str(outer)  # Python reads the command line's
    rest = outer.render("rest")
    assert '`POST /v1/plans {"pins": {"a.{@b}": "int8"}}`' in rest and "tierwise" not in rest
    # the text is put in as given: a pattern that looks like a field token is not rendered
    assert "'b'" not in rest and "--b" not in outer.render("cli")


def test_text_that_only_looks_like_a_token_is_left_as_written():
    for text in ("{$abc}", "{$NQ}", "${MODEL_DIR:?folder}"):
        assert render_tokens(text, "rest") == text and render_tokens(text, "cli") == text
