"""Settings expansion: grids, explicit settings, slugs, label-missing, and config errors."""

import pytest

from methods.settings import ConfigError, expand_settings, slug, with_label_missing


def test_grid_is_cartesian_with_stable_readable_slugs():
    out = expand_settings("harmony", {"params": {"max_iter": 5}, "grid": {"theta": [1, 2.5], "n_comps": [20]}})
    assert [s for s, _ in out] == ["n_comps-20__theta-1", "n_comps-20__theta-2.5"]
    assert out[1][1] == {"max_iter": 5, "n_comps": 20, "theta": 2.5}


def test_no_grid_is_default_and_explicit_settings_are_added():
    assert expand_settings("harmony", None) == [("default", {})]
    out = expand_settings("harmony", {"grid": {"theta": [2]}, "settings": [{"theta": 0}]})
    assert [s for s, _ in out] == ["theta-2", "theta-0"]


@pytest.mark.parametrize("section,needle", [
    ({"grid": {"thetaa": [1]}}, "thetaa"),
    ({"params": {"bogus": 1}}, "bogus"),
    ({"grid": {"theta": 2}}, "methods.harmony.grid.theta"),
    ({"grid": {"theta": []}}, "non-empty list"),
    ({"settings": [{"nope": 1}]}, "settings[0]"),
])
def test_bad_sections_name_the_key(section, needle):
    with pytest.raises(ConfigError, match=None) as exc:
        expand_settings("harmony", section)
    assert needle in str(exc.value)


def test_unknown_method():
    with pytest.raises(ConfigError, match="unknown method 'harmonee'"):
        expand_settings("harmonee", {})


def test_slug_formats_values():
    assert slug({"a": True, "b": None, "c": 0.5, "d": "x/y"}) == "a-true__b-null__c-0.5__d-x_y"


def test_label_missing_only_for_supervised(monkeypatch):
    from methods import registry
    from methods.registry import MethodSpec

    monkeypatch.setitem(registry.METHODS, "sup", MethodSpec("m", "embedding", "lognorm", "x", supervised=True))
    assert with_label_missing("harmony", [("default", {})], [0, 0.5]) == [("default", {}, 0.0)]
    got = with_label_missing("sup", [("default", {}), ("k-1", {"k": 1})], [0, 0.5])
    assert [(s, lm) for s, _, lm in got] == [("default", 0.0), ("label_missing-0.5", 0.5),
                                             ("k-1", 0.0), ("k-1__label_missing-0.5", 0.5)]


def test_base_setting_inverts_the_hidden_label_names():
    from methods.settings import base_setting, with_label_missing

    settings = [("default", {}), ("lr-0.001", {}), ("kl_weight-1.5__z_dim-20", {})]
    for name, _, share in with_label_missing("scdreamer_sup", settings, [0, 0.1, 0.25]):
        assert base_setting(name, share) in {"default", "lr-0.001", "kl_weight-1.5__z_dim-20"}
        assert (base_setting(name, share) == name) == (share == 0)
    assert base_setting("label_missing-0.1", 0.1) == "default"
    assert base_setting("lr-0.001__label_missing-0.25", 0.25) == "lr-0.001"
