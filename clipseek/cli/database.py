"""The `clipseek db` commands: migrate the schema, print the URL, stop the embedded server."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url

from clipseek.cli.base import pass_context
from clipseek.context import Context
from clipseek.errors import ClipSeekError
from clipseek.store.app_role import check_app_role, hand_database_to
from clipseek.store.db import database_url, upgrade_schema
from clipseek.store.embedded_db import EmbeddedPostgres
from clipseek.store.sql_reader import create_reader_login, reader_login_name


@click.group()
def db() -> None:
    """Manage the database."""


@db.command()
@pass_context
def upgrade(ctx: Context) -> None:
    """Apply pending schema migrations."""
    upgrade_schema(database_url(ctx.settings))
    click.echo("The database schema is up to date.")


@db.command()
@click.option("--psql", is_flag=True, help="Print it in libpq form, for psql.")
@pass_context
def url(ctx: Context, psql: bool) -> None:
    """Print the database URL (start the embedded server if needed)."""
    address = database_url(ctx.settings)
    if psql:
        address = make_url(address).set(drivername="postgresql").render_as_string(
            hide_password=False)
    click.echo(address)


@db.command()
@click.argument("name")
@pass_context
def reader(ctx: Context, name: str) -> None:
    """Create a read-only SQL login NAME (SELECT on the documented tables) and print its psql URL."""
    import psycopg

    login = reader_login_name(name)
    ctx.db.ping()  # brings the schema up to date first: the grants name its tables
    address = make_url(database_url(ctx.settings))
    if ctx.settings.database_url:
        admin = psycopg.connect(address.set(drivername="postgresql").render_as_string(
            hide_password=False), autocommit=True)
    else:
        admin = EmbeddedPostgres(ctx.settings.pgdata).admin_connection(address.database or "clipseek")
    with admin as conn:
        secret = create_reader_login(conn, login)
    click.echo(address.set(drivername="postgresql", username=login, password=secret)
               .render_as_string(hide_password=False))


@db.command("app-role")
@click.argument("name")
@click.option("--password", envvar="CLIPSEEK_APP_DB_PASSWORD", required=True,
              help="The role's password (default: $CLIPSEEK_APP_DB_PASSWORD).")
@pass_context
def app_role(ctx: Context, name: str, password: str) -> None:
    """Hand the database to NAME, a login that owns the tables but is no superuser (compose)."""
    if not ctx.settings.database_url:
        raise ClipSeekError("The embedded database already runs ClipSeek as an application "
                            "role; `clipseek db app-role` is for a server given by DATABASE_URL.")
    check_app_role(name, password)
    ctx.db.ping()  # brings the schema up to date first, so every table is handed over
    moved = hand_database_to(ctx.settings.database_url, name, password)
    address = make_url(ctx.settings.database_url).set(drivername="postgresql", username=name,
                                                      password="***")
    click.echo(f"{name} owns database {address.database} ({moved} objects handed over); "
               f"connect as {address.render_as_string()}.")


@db.command()
@pass_context
def stop(ctx: Context) -> None:
    """Stop the embedded PostgreSQL server."""
    if ctx.settings.database_url:
        raise ClipSeekError("DATABASE_URL is set: ClipSeek does not manage that server.")
    was_running = EmbeddedPostgres(ctx.settings.pgdata).stop()
    click.echo("Stopped the embedded PostgreSQL." if was_running else "It was not running.")


@db.command()
@click.option("--m", "m", type=int, default=None,
              help="Links per node of the new graph (pgvector's default 16; 24 past ~300,000 images).")
@click.option("--ef-construction", type=int, default=None,
              help="Candidates weighed while linking each node (default 64; 128 with m 24).")
@click.option("--memory", default=None, metavar="SIZE",
              help="maintenance_work_mem for the build, e.g. 2GB (a graph that outgrows it "
                   "is finished on disk, many times slower).")
@click.option("--model", default=None, help="Another model's index (default: the active model's).")
@pass_context
def index(ctx: Context, m: int | None, ef_construction: int | None, memory: str | None,
          model: str | None) -> None:
    """Show the search index's graph, or build it again with --m/--ef-construction.

    Searches go on during a rebuild: the new graph is built beside the old one and replaces
    it when done (minutes per 100,000 images; BENCHMARKS.md has the times at 1,000,000).
    """
    from clipseek.cli.progress import StageBars
    from clipseek.clip.catalog import dimension_of
    from clipseek.store.vector_indexes import check_graph, index_graph, rebuild_index

    name = model or ctx.model
    graph = index_graph(ctx.db.engine, name)
    if m is None and ef_construction is None:
        if graph is None:
            raise ClipSeekError(f"{name} has no search index yet; ClipSeek builds it when a command, "
                                "a worker or the web app starts.")
        state = "" if graph.valid else " (INVALID: half-built; it is rebuilt at the next start)"
        click.echo(f"{graph.name}: m = {graph.m}, ef_construction = {graph.ef_construction}, "
                   f"{graph.size_bytes / 2**20:,.1f} MB{state}")
        return
    new_m = m if m is not None else (graph.m if graph else 16)
    new_ef = ef_construction if ef_construction is not None else (graph.ef_construction if graph else 64)
    check_graph(new_m, new_ef)  # before anything slow
    with StageBars() as bars:
        built = rebuild_index(ctx.db.engine, name, dimension_of(name), m=new_m, ef_construction=new_ef,
                              memory=memory, progress=lambda phase, done, total: bars.show(phase, done, total,
                                                                            unit=" rows"))
    click.echo(f"Rebuilt {built.name}: m = {built.m}, ef_construction = {built.ef_construction}, "
               f"{built.size_bytes / 2**20:,.1f} MB. Searches used the old graph until now.")
