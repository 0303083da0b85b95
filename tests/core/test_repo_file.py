import textwrap
from pathlib import Path

import pytest

from ferry.core import (
    FeatureRef,
    RepoError,
    UnknownReferenceError,
    ValueType,
    load_repo,
    parse_repo,
)

SAMPLE = Path(__file__).parents[2] / "samples" / "fraud" / "feature_repo.yaml"
SAMPLE_TEXT = SAMPLE.read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(RepoError) as caught:
        parse_repo(textwrap.dedent(text), "/repo/features.yaml")
    return [str(p) for p in caught.value.problems]


def test_sample_repo_loads() -> None:
    repo = load_repo(SAMPLE)
    assert repo.project == "fraud"
    view = repo.view("user_merchant_stats")
    assert view.join_key_names == ("user_id", "merchant_id")
    assert repo.view("user_stats").ttl_micros == 2 * 86_400 * 10**6
    assert repo.view("user_stats").feature("risk_embedding").type is ValueType.FLOAT_LIST
    assert len(repo.service("fraud_v1").refs) == 9
    assert repo.offline_root == str(SAMPLE.parent / "data")
    assert repo.online_store == f"sqlite:///{SAMPLE.parent / 'online.db'}"


def test_refs_resolve_in_order_and_expand_stars() -> None:
    repo = load_repo(SAMPLE)
    assert repo.resolve(["merchant_stats:category", "merchant_stats:*"])[:2] == (
        FeatureRef("merchant_stats", "category"),
        FeatureRef("merchant_stats", "chargeback_rate"),
    )
    for bad in ["nope:x", "user_stats:nope", "user_stats", ":x"]:
        with pytest.raises(UnknownReferenceError):
            repo.resolve([bad])
    with pytest.raises(UnknownReferenceError, match="unknown feature service 'x'"):
        repo.service("x")


def test_every_problem_is_reported_at_once_with_line_and_path() -> None:
    found = problems("""\
        project: fraud
        offline_store: {root: data}
        colour: blue
        entities:
          user: {join_keys: {user_id: float}}
        feature_views:
          v:
            entities: [user, ghost]
            source: {path: v, timestamp_field: ts}
            ttl: 3 fortnights
            features:
              a: int65
              ts: int64
          w:
            entities: [user]
            source: {timestamp_field: ts}
            features: {}
        feature_services:
          s: {features: ["v:a", "nope:x", "w:*"]}
        """)
    assert found == [
        "/repo/features.yaml:3: colour: unknown field; expected one of: project, description, "
        "offline_store, online_store, entities, feature_views, feature_services",
        "/repo/features.yaml:5: entities.user.join_keys.user_id: a join key must be int64, "
        "int32 or string, found float",
        "/repo/features.yaml:8: feature_views.v.entities: unknown entity 'ghost'; declared: user",
        "/repo/features.yaml:10: feature_views.v.ttl: '3 fortnights' is not a duration: use "
        "parts like 2d, 36h, 1h30m, 90s (units w d h m s)",
        "/repo/features.yaml:12: feature_views.v.features.a: expected a type (int64, int32, "
        "double, float, bool, string, bytes, timestamp, list<int64>, list<int32>, "
        "list<double>, list<float>, list<string>), found 'int65'",
        "/repo/features.yaml:13: feature_views.v.features.ts: a feature cannot have the name "
        "of the timestamp field",
        "/repo/features.yaml:16: feature_views.w.source.path: expected a non-empty text, found "
        "nothing (the field is missing)",
        "/repo/features.yaml:17: feature_views.w.features: expected at least one feature",
        "/repo/features.yaml:19: feature_services.s.features: feature reference 'nope:x': "
        "unknown feature view 'nope'",
    ]


def test_duplicates_are_reported() -> None:
    found = problems("""\
        project: p
        offline_store: {root: d}
        entities:
          e: {join_keys: {k: int64}}
          e: {join_keys: {k: string}}
        feature_views:
          v:
            entities: [e]
            source: {path: v, timestamp_field: ts}
            features: {a: int64, a: string}
          w:
            entities: [e]
            source: {path: w, timestamp_field: ts}
            features: {b: int64}
        feature_services:
          s: {features: ["w:b", "w:*", "v:a"]}
        """)
    assert found == [
        "/repo/features.yaml:5: entities.e: declared twice",
        "/repo/features.yaml:10: feature_views.v.features.a: declared twice",
        "/repo/features.yaml:16: feature_services.s.features: features listed twice: w:b",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "/repo/features.yaml: the file is empty"),
        ("project: [\n", "/repo/features.yaml:2: not valid YAML"),
        ("- a\n- b\n", "/repo/features.yaml:1: expected a mapping, found a list"),
        (
            "project: 'bad name'\noffline_store: {root: d}\n"
            "entities: {e: {join_keys: {k: int64}}}\n",
            "/repo/features.yaml:1: project: expected a name of letters, digits and _, "
            "found 'bad name'",
        ),
    ],
)
def test_broken_files(text: str, expected: str) -> None:
    assert problems(text)[0].startswith(expected)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="cannot read the file"):
        load_repo(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "path",
    ["../../elsewhere", "/etc/passwd", "a/../../b", "..", ".", "s3://other/x", "a\\\\..\\\\b"],
)
def test_a_source_path_may_not_leave_the_offline_root(path: str) -> None:
    text = SAMPLE_TEXT.replace("path: user_stats", f"path: '{path}'", 1)
    assert text != SAMPLE_TEXT
    with pytest.raises(RepoError) as caught:
        parse_repo(text, "repo.yaml")
    assert "leaves the offline root" in str(caught.value)
    assert "feature_views.user_stats.source.path" in str(caught.value)


@pytest.mark.parametrize("path", ["user_stats", "a/../user_stats", "./deep/er/stats"])
def test_source_paths_below_the_root_are_fine(path: str) -> None:
    text = SAMPLE_TEXT.replace("path: user_stats", f"path: '{path}'", 1)
    assert parse_repo(text, "repo.yaml").view("user_stats").source.path == path


@pytest.mark.parametrize(
    ("root", "said"),
    [
        ("gs://bucket/data", "the offline store is a local folder or s3://BUCKET/PREFIX"),
        ("hdfs://name/data", "the offline store is a local folder or s3://BUCKET/PREFIX"),
        ("s3://", "expected s3://BUCKET/PREFIX"),
        ("s3://KEY:root-secret@/data", "'s3://KEY:***@/data': expected s3://BUCKET/PREFIX"),
    ],
)
def test_an_offline_root_ferry_cannot_read_is_a_problem(root: str, said: str) -> None:
    """gs:// passed and then validate hung on the network; no bucket gave a problem per view."""
    text = SAMPLE_TEXT.replace("root: data", f"root: '{root}'", 1)
    (found,) = problems(text)
    assert "offline_store.root: " in found
    assert said in found
    assert "root-secret" not in found


@pytest.mark.parametrize("root", ["data", "/abs/data", "s3://bucket", "s3://bucket/a/b"])
def test_local_and_s3_offline_roots_are_fine(root: str) -> None:
    text = SAMPLE_TEXT.replace("root: data", f"root: '{root}'", 1)
    assert parse_repo(text, "/repo/features.yaml").offline_root.endswith(root.lstrip("."))
