"""The `clipseek people` commands: list people, name, merge, remove a face, turn people on and off."""

from __future__ import annotations

import json

import click

from clipseek.cli.base import pass_context
from clipseek.context import Context
from clipseek.indexing.face_finding import queue_for_faces
from clipseek.library.derivatives import remove_face_thumbnails
from clipseek.library.people import (
    disable_people,
    enable_people,
    find_person,
    list_people,
    merge_people,
    name_person,
    people_counts,
    people_to_delete,
    person_faces_with_images,
    person_name,
    remove_face,
)

MAX_ID = 2**63 - 1


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def people(click_ctx: click.Context, as_json: bool) -> None:
    """People: faces found in pictures, grouped into persons (off until `clipseek people enable`).

    With no command, list them. PERSON is a name or an id.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    with ctx.db.session() as session:
        found = list_people(session)
        counts = people_counts(session, ctx.settings)
    if as_json:
        click.echo(json.dumps({"enabled": counts.enabled, "people": [p.to_dict() for p in found]},
                              indent=2, ensure_ascii=False))
        return
    if not counts.enabled:
        click.echo("People is off: `clipseek people enable` finds the faces in your pictures.")
    elif not found:
        click.echo(f"No people yet ({counts.waiting} picture(s) wait for their faces to be found).")
    for person in found:
        click.echo(f"{person.id}\t{person.label}\t{person.faces} face(s)\t{person.images} picture(s)")


@people.command()
@click.argument("ref", metavar="PERSON")
@click.argument("name")
@pass_context
def name(ctx: Context, ref: str, name: str) -> None:
    """Give PERSON the name NAME (then search with person=NAME)."""
    with ctx.db.session() as session:
        named = name_person(session, person_id=find_person(session, ref).id, name=person_name(name))
        session.commit()
        click.echo(f"Person {named.id} is now {named.name!r}.")


@people.command()
@click.argument("keep", metavar="PERSON")
@click.argument("other", metavar="OTHER")
@pass_context
def merge(ctx: Context, keep: str, other: str) -> None:
    """Make OTHER's faces PERSON's (two groups of one person); OTHER is deleted."""
    with ctx.db.session() as session:
        merged = merge_people(session, keep_id=find_person(session, keep).id,
                              other_id=find_person(session, other).id)
        session.commit()
        click.echo(f"Merged into person {merged.id}{f' ({merged.name})' if merged.name else ''}.")


@people.command()
@click.argument("ref", metavar="PERSON")
@pass_context
def faces(ctx: Context, ref: str) -> None:
    """List PERSON's faces: face id, picture id, file and box (left, top, right, bottom)."""
    with ctx.db.session() as session:
        person_id = find_person(session, ref).id
        for face, image in person_faces_with_images(session, person_id):
            click.echo(f"{face.id}\t{image.id}\t{image.original_name}\t"
                       f"{face.box_left},{face.box_top},{face.box_right},{face.box_bottom}")


@people.command("remove-face")
@click.argument("face_id", type=click.IntRange(1, MAX_ID))
@pass_context
def remove_face_command(ctx: Context, face_id: int) -> None:
    """Take face FACE_ID from its person for good."""
    with ctx.db.session() as session:
        person_id = remove_face(session, face_id=face_id)
        session.commit()
        click.echo(f"Face {face_id} is no longer person {person_id}'s.")


@people.command()
@pass_context
def enable(ctx: Context) -> None:
    """Turn people on: the workers find the faces in every picture, in the background."""
    with ctx.db.session() as session:
        waiting = enable_people(session)
        session.commit()
        tasks = queue_for_faces(session, waiting, enqueue=ctx.enqueue_faces)
    click.echo(f"People is on: {len(waiting)} picture(s) wait for their faces to be found "
               f"({tasks} task(s) sent to the workers).")


@people.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def disable(ctx: Context, yes: bool) -> None:
    """Turn people off, deleting every face found, its descriptor, its cached crop, and every
    unnamed person."""
    with ctx.db.session() as session:
        counted = people_to_delete(session)
        session.commit()
        question = (f"Delete {counted.faces} face(s) with their descriptors and {counted.people} unnamed "
                    "person(s)? Named people keep their names, with no faces, until people is on again.")
        if not yes and not click.confirm(question, err=True):
            click.echo("Nothing deleted; people stays as it was.")
            return
        done = disable_people(session, ctx.settings)
        session.commit()
    remove_face_thumbnails(ctx.settings.thumbnails)
    click.echo(f"People is off: {done.faces} face(s) and {done.people} unnamed person(s) deleted.")
