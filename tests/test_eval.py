"""`clipseek eval` and `clipseek models`: known answers (chance, oracle) and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from clipseek.clip.catalog import UnknownModel, lookup
from clipseek.clip.encoder import ClipEncoder
from clipseek.library.ingest import ingest_inline
from clipseek.library.register import Candidate
from clipseek.photo.imaging import OPENAI_PREPROCESS, Preprocess
from clipseek.search.evaluation import EvalError, Pair, chance_recall, evaluate, pairs_from_file, stored_pairs
from clipseek.settings import Settings
from clipseek.store.db import Database
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.tables import Embedding
from tests.cli import CliResult, run_in_process
from tests.conftest import Library, built_library
from tests.images import photo_array

IMAGES = 40
CAPTIONS_PER_IMAGE = 2


def _run(env: dict[str, str], *args: str) -> CliResult:
    return run_in_process(env, *args)


@pytest.fixture(scope="module")
def captioned_library(pg_server: EmbeddedPostgres, encoder: ClipEncoder,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library[list[Candidate]]]:
    """IMAGES distinct photos, each with CAPTIONS_PER_IMAGE COCO captions, indexed by the
    random model once for the module: each test that uses `captioned` gets a copy."""
    folder = tmp_path_factory.mktemp("captioned") / "val2017"
    folder.mkdir()
    candidates = []
    for i in range(IMAGES):
        path = folder / f"{i:012d}.jpg"
        PILImage.fromarray(photo_array(seed=100 + i, size=(120, 160))).save(path, quality=90)
        captions = (f"photograph number {i} of a quiet street", f"picture {i}: a bowl of fruit on a table")
        candidates.append(Candidate(path=path, source="coco", collection="coco/val2017", captions=captions))

    def index(db: Database, settings: Settings) -> list[Candidate]:
        ingest_inline(db, encoder, candidates, settings=settings)
        return candidates

    with built_library(pg_server, folder.parent / "home", index) as library:
        yield library


@pytest.fixture
def captioned(captioned_library: Library[list[Candidate]], db: Database) -> list[Candidate]:
    """The test's database holds the captioned photos, indexed: the photos."""
    return list(captioned_library.built)


class OracleEncoder:
    """Captions embed exactly as their image does: every recall must be 1.0."""

    def __init__(self, model_id: str, by_text: dict[str, np.ndarray]) -> None:
        self.model_id, self.dim, self.by_text = model_id, 512, by_text

    @property
    def preprocess(self) -> Preprocess:
        """OpenAI's (no image is preprocessed by the evaluation)."""
        return OPENAI_PREPROCESS

    def load(self) -> None:
        """Nothing to load."""

    def encode_images(self, images: Sequence[PILImage.Image]) -> np.ndarray:
        """Not used by the evaluation."""
        raise NotImplementedError

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Not used by the evaluation."""
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The stored embedding of the image each caption describes."""
        return np.stack([self.by_text[t] for t in texts])


def test_random_weights_give_chance_level_recall(captioned: list[Candidate], db: Database,
                                                 encoder: ClipEncoder) -> None:
    with db.session() as session:
        pairs = stored_pairs(session)
        result = evaluate(session, encoder, pairs)
    assert (result.images, result.captions) == (IMAGES, IMAGES * CAPTIONS_PER_IMAGE)
    for k in (1, 5, 10):
        t2i, i2t = chance_recall(k, IMAGES, CAPTIONS_PER_IMAGE)
        # Tolerance: four standard errors of a mean of independent hits at the chance rate
        # (80 captions, 40 images), plus one query's worth.
        assert abs(result.text_to_image.at(k) - t2i) <= 4 * np.sqrt(t2i * (1 - t2i) / 80) + 1 / 80
        assert abs(result.image_to_text.at(k) - i2t) <= 4 * np.sqrt(i2t * (1 - i2t) / 40) + 1 / 40
    assert result.text_to_image.mean_rank is not None
    spread = 4 * np.sqrt((IMAGES**2 - 1) / 12 / 80) + 1
    assert abs(result.text_to_image.mean_rank - (IMAGES + 1) / 2) <= spread


def test_oracle_encoder_gives_perfect_recall_exact_and_through_the_index(
        captioned: list[Candidate], db: Database, encoder: ClipEncoder) -> None:
    with db.session() as session:
        pairs = stored_pairs(session)
        stored = dict(session.execute(select(Embedding.image_id, Embedding.embedding)
                                      .where(Embedding.model == encoder.model_id)).all())
        by_text = {p.text: np.asarray(stored[p.image_id], dtype=np.float32) for p in pairs}
        oracle = OracleEncoder(encoder.model_id, by_text)
        result = evaluate(session, oracle, pairs)
    for recall in (result.text_to_image, result.image_to_text, result.text_to_image_index):
        assert recall.curve == (1.0,) * 10
    assert result.text_to_image.mean_rank == 1.0


def test_captions_file_matches_stored_images_by_name(captioned: list[Candidate], db: Database,
                                                     tmp_path: Path) -> None:
    notes = {"images": [{"id": i, "file_name": c.path.name} for i, c in enumerate(captioned[:5])]
             + [{"id": 99, "file_name": "not-stored.jpg"}],
             "annotations": [{"image_id": i, "caption": f"caption {i}"} for i in range(5)]}
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps(notes))
    with db.session() as session:
        pairs, unmatched = pairs_from_file(session, path)
    assert unmatched == 1
    assert sorted(p.text for p in pairs) == [f"caption {i}" for i in range(5)]


def test_eval_without_captions_says_where_to_get_them(db: Database, encoder: ClipEncoder) -> None:
    with db.session() as session, pytest.raises(EvalError, match="no captions to evaluate"):
        evaluate(session, encoder, stored_pairs(session))
    with db.session() as session, pytest.raises(EvalError, match="embedded none"):
        evaluate(session, encoder, [Pair(1, "a cat")])


def test_unknown_model_name_suggests_the_nearest() -> None:
    with pytest.raises(UnknownModel, match=r"ViT-B-32/openai"):
        lookup("ViT-B32/openai")
    assert lookup("ViT-B-16/random").dim == 512
    assert lookup("ViT-B-16-SigLIP2/webli").dim == 768


def test_cli_eval_writes_table_json_and_png(captioned: list[Candidate], cli_env: dict[str, str],
                                            tmp_path: Path) -> None:
    done = _run(cli_env, "eval", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "text->image exact" in done.stdout and "random weights" in done.stderr
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report[0]["captions"] == IMAGES * CAPTIONS_PER_IMAGE
    assert (tmp_path / "out" / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_input_is_one_sentence(cli_env: dict[str, str]) -> None:
    for args, expected in ((("eval", "--model", "ViT-B-33/openai"), "did you mean"),
                           (("eval",), "no captions to evaluate"),
                           (("eval", "--model", "ViT-B-16-SigLIP2/webli"), "cannot load")):
        done = run_in_process(cli_env, *args)
        assert done.returncode == 1
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_cli_models_lists_the_catalogue_with_coverage(captioned: list[Candidate],
                                                      cli_env: dict[str, str]) -> None:
    done = _run(cli_env, "models", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["ViT-B-32/openai"]["coco_t2i_r1"] == 30.4
    assert rows["ViT-B-16-SigLIP2/webli"]["dim"] == 768
    assert not rows["ViT-B-32/openai"]["weights_present"]
    assert rows["ViT-B-32/openai"]["indexed"] == IMAGES
    # The random test model the collection is indexed with is listed as the active one.
    assert rows["ViT-B-32/random"]["state"] == "active"
    assert rows["ViT-B-32/random"]["embedded"] == IMAGES
    table = _run(cli_env, "models")
    assert "ViT-B-16-SigLIP2/webli" in table.stdout
    assert "*ViT-B-32/random" in table.stdout


def test_cli_compare_puts_models_side_by_side_and_refuses_one_without_embeddings(
        captioned: list[Candidate], cli_env: dict[str, str], tmp_path: Path) -> None:
    refused = run_in_process(cli_env, "eval", "--compare", "ViT-B-32/random", "ViT-B-16/random")
    assert refused.returncode == 1
    assert "ViT-B-16/random has embedded none" in refused.stderr and "Traceback" not in refused.stderr
    done = _run(cli_env, "eval", "--compare", "ViT-B-32/random", "ViT-B-32/random",
                "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert [r["model"] for r in report] == ["ViT-B-32/random", "ViT-B-32/random"]
    assert report[0]["text_to_image"] == report[1]["text_to_image"]
