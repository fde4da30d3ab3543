"""The documentation holds: its SQL runs as written (with the test model's name) and means what it
says, its links lead somewhere, and the README stays short."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sqlalchemy import func, text, update

from clipseek.clip.encoder import ClipEncoder
from clipseek.library.albums import add_to_album, create_album
from clipseek.search.query import Mode, SearchRequest, Term
from clipseek.search.query_vectors import text_vectors
from clipseek.search.run import run_search
from clipseek.settings import RANDOM_MODEL, Settings
from clipseek.store.db import Database
from clipseek.store.tables import Caption, Image, NearDuplicatePair
from clipseek.store.vector_indexes import index_name
from tests.ranking import assert_scores_descend

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SQL_PAGE = DOCS / "sql.md"
DEPLOYMENT_PAGE = DOCS / "deployment.md"
DOCUMENTED = "ViT-B-32/openai"
# The texts docs/sql.md ranks by: stored as `clipseek embed --store` stores them.
DOCUMENTED_TEXTS = ("a dog on a beach", "a cat")


def store_documented_texts(db: Database, encoder: ClipEncoder) -> None:
    """Keep the embeddings of the texts that the documented SQL ranks by."""
    with db.session() as session:
        text_vectors(session, encoder, DOCUMENTED_TEXTS, keep=True)
        session.commit()


def _for_test_model(sql: str) -> str:
    """The documented SQL with the test model's name, and its index's name, in place of ViT-B-32/openai's."""
    return (sql.replace(index_name(DOCUMENTED), index_name(RANDOM_MODEL))
            .replace(DOCUMENTED, RANDOM_MODEL))


def _sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", SQL_PAGE.read_text(), flags=re.S)


def test_documented_sql_examples_run(db: Database, encoder: ClipEncoder, settings: Settings,
                                 indexed_samples: list[int]) -> None:
    store_documented_texts(db, encoder)
    with db.session() as session:
        holidays = create_album(session, name="Holidays", created_by=None)
        session.flush()
        add_to_album(session, album_id=holidays.id, image_ids=[4, 5, 6], added_by=None)
        session.execute(update(Image).where(Image.id == 5).values(trashed_at=func.now()))
        # the samples carry no GPS: two of them as if taken in Portugal
        session.execute(update(Image).where(Image.id.in_([1, 2])).values(
            place_city="Lisbon", place_region="Lisbon", place_country="Portugal", place_country_code="PT"))
        # the words a worker would have read in one picture
        session.add(Caption(image_id=2, source="ocr", text="FARMERS MARKET", confidence=0.97))
        session.execute(update(Image).where(Image.id == 2).values(ocr_state="read"))
        # two pairs of look-alikes as hashing keeps them; image 5 is in the trash
        session.add_all([NearDuplicatePair(image_id=3, other_id=4, distance=7),
                         NearDuplicatePair(image_id=4, other_id=5, distance=2)])
        session.commit()
    blocks = _sql_blocks()
    assert len(blocks) == 10
    results, plans = [], []
    with db.engine.connect() as conn:
        for block in blocks:
            for statement in filter(None, (s.strip() for s in block.split(";"))):
                sql = _for_test_model(statement)
                result = conn.execute(text(sql))
                if not result.returns_rows:  # a SET
                    continue
                results.append(result.all())
                # With every other way closed, a plan that can use the model's index does.
                conn.execute(text("SET enable_seqscan = off; SET enable_bitmapscan = off; "
                                  "SET enable_sort = off"))
                plans.append("\n".join(r[0] for r in conn.execute(text("EXPLAIN " + sql))))
                conn.execute(text("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort"))
        # The hybrid search's SET lasts the session, so its walk may return its best 200.
        ef_search = conn.execute(text("SHOW hnsw.ef_search")).scalar()
    (neighbours, by_text, cats, album, hybrid, near, pairs, countries, cities, statuses, failures,
     words, reading) = results
    assert ef_search == "250"
    # The nearest-neighbour walks go through the model's own index, as docs/sql.md says,
    # though the SQL names no model.
    assert all(index_name(RANDOM_MODEL) in plans[i] for i in (0, 1, 4))
    assert "images_phash_hnsw_idx" in plans[5]
    # Ranking by a stored text in SQL ranks as ClipSeek's own search of it does.
    with db.session() as session:
        ours = run_search(session, encoder, SearchRequest(
            query=DOCUMENTED_TEXTS[0], terms=(Term(DOCUMENTED_TEXTS[0]),), mode=Mode.SEMANTIC,
            show_all=True, per_page=10))
    assert [r.id for r in by_text] == [hit.image_id for hit in ours.hits]
    assert [round(r.score, 3) for r in by_text] == [round(hit.score or 0, 3) for hit in ours.hits]
    assert len(neighbours) == 10 and 3 not in [r.id for r in neighbours]
    scores = [r.score for r in neighbours]
    assert_scores_descend(scores)
    assert [r.text for r in cats] == ["a tabby cat looking to the side"] and 0 <= cats[0].distance < 2
    # The album's pictures outside the trash, newest first.
    assert sorted(r.id for r in album) == [4, 6]
    assert [r.shown_at for r in album] == sorted((r.shown_at for r in album), reverse=True)
    # The only cat caption is in both lists, so the fusion ranks its image first.
    assert hybrid[0].id == cats[0].id and len(hybrid) == 10
    # The sample photos are all different pictures: their nearest hashes are far apart.
    bits = [r.bits for r in near]
    assert len(near) == 5 and bits == sorted(bits) and bits[0] > settings.duplicate_distance
    # The kept pairs of pictures still in the library, closest first (none of the samples' own).
    assert [(r.image_id, r.other_id, r.bits) for r in pairs] == [(3, 4, 7)]
    assert [tuple(r) for r in countries] == [("Portugal", 2)]
    assert [tuple(r) for r in cities] == [("Lisbon", "Lisbon", 2)]
    # Image 5 is in the trash: counted nowhere.
    assert dict((r.status, r.count) for r in statuses) == {"indexed": 21}
    assert failures == []
    assert [(r.id, r.text, float(r.confidence)) for r in words] == [(2, "FARMERS MARKET", 0.97)]
    assert [tuple(r) for r in reading] == [("read", 1), (None, 21)]


def test_documented_index_rebuild_keeps_search_on_the_bigger_graph(
    db: Database, encoder: ClipEncoder, settings: Settings, indexed_samples: list[int],
    cli_env: dict[str, str],
) -> None:
    # The page names the command more than once, with and without options: each is a
    # beginning of the fullest, which is run.
    named = re.findall(r"`(clipseek db index --m [^`]+)`", DEPLOYMENT_PAGE.read_text())
    commands = sorted(set(named), key=len)
    assert commands and all(commands[-1].startswith(c) for c in commands)
    run = subprocess.run(commands[-1].split(), env=cli_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    name = index_name(RANDOM_MODEL)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        indexes: dict[str, list[str]] = {row.relname: row.reloptions for row in conn.execute(text(
            "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE c.relname LIKE 'embeddings_hnsw_%' AND i.indisvalid"))}
        conn.execute(text("SET enable_seqscan = off; SET enable_bitmapscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(text(
            f"EXPLAIN SELECT image_id FROM embeddings WHERE model = '{RANDOM_MODEL}' "
            "ORDER BY embedding::halfvec(512) <=> (SELECT embedding::halfvec(512) FROM embeddings "
            "LIMIT 1) LIMIT 5")))
    # One index for the model, under the name ClipSeek looks it up by, with the bigger graph.
    assert indexes == {name: ["m=24", "ef_construction=128"]}
    assert f"Index Scan using {name}" in plan


def _pages() -> list[Path]:
    """Every page of the documentation: the README, docs/, the benchmarks and their history."""
    return [README, *sorted(DOCS.glob("*.md")), ROOT / "BENCHMARKS.md",
            *sorted((ROOT / "bench" / "results").rglob("HISTORY.md"))]


def _prose(page: Path) -> str:
    """A page without its fenced code blocks, where a `#` starts a comment, not a heading."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    headings = re.findall(r"^#+ (.+)$", _prose(page), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_readme_stays_short() -> None:
    assert len(README.read_text().splitlines()) <= 210


def test_every_relative_link_leads_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for page in _pages():
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page)):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def test_no_page_tells_time_by_rounds_of_work() -> None:
    # "this session" means nothing to a reader; a date does.
    stale = re.compile(r"this session|last round|latest round|earlier session", flags=re.I)
    found = [f"{page.relative_to(ROOT)}: {match.group(0)}" for page in _pages()
             for match in stale.finditer(page.read_text())]
    assert found == []
