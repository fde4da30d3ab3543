"""The `duplicates` command: groups of the same picture, and moving the extra copies to the trash."""

from __future__ import annotations

import json

import click

from clipseek.cli.base import pass_context
from clipseek.context import Context
from clipseek.library.duplicates import (
    DuplicateGroup,
    Member,
    find_duplicate_groups,
    hash_counts,
    trash_extras,
)
from clipseek.settings import MAX_DUPLICATE_DISTANCE


def _size(member: Member) -> str:
    pixels = f"{member.width}x{member.height}" if member.width and member.height else "size unknown"
    return f"{pixels} {member.format or '?'} {member.file_size / 1024:,.0f} KB"


def group_lines(number: int, group: DuplicateGroup) -> list[str]:
    """One group as lines for a person: the picture to keep first, then the others."""
    lines = [f"Group {number}: {len(group.members)} pictures"]
    for member in group.members:
        mark = "keep" if member is group.keeper else "    "
        taken = f", taken {member.taken_at:%Y-%m-%d}" if member.taken_at else ""
        apart = "" if member is group.keeper else f", {group.bits_from_keeper(member)} bits from the kept one"
        lines.append(f"  {mark} #{member.id} {member.name} ({_size(member)}, added "
                     f"{member.created_at:%Y-%m-%d}{taken}{apart})")
    return lines


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
@click.option("--threshold", type=click.IntRange(0, MAX_DUPLICATE_DISTANCE), default=None, metavar="BITS",
              help="Most bits of the 64-bit perceptual hashes that may differ "
                   "(default: CLIPSEEK_DUPLICATE_DISTANCE).")
@click.option("--trash-extras", "trash_extras_", is_flag=True,
              help="Move every picture of each group but the one to keep to the trash.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def duplicates(ctx: Context, as_json: bool, threshold: int | None, trash_extras_: bool, yes: bool) -> None:
    """List groups of the same picture (re-encodes, resizes, small crops, light edits) and the
    one to keep of each: the largest, then the original, then the oldest."""
    distance = ctx.settings.duplicate_distance if threshold is None else threshold
    with ctx.db.session() as session:
        groups = find_duplicate_groups(session, distance=distance)
        counts = hash_counts(session)
        unhashed, unpaired = counts.unhashed, counts.unpaired
    extras = sum(len(g.extra_ids) for g in groups)
    found = {"distance": distance, "groups": [g.to_dict() for g in groups], "unhashed": unhashed,
             "unpaired": unpaired}
    if not as_json:
        for number, group in enumerate(groups, 1):
            for line in group_lines(number, group):
                click.echo(line)
        click.echo(f"{len(groups)} group(s) of the same picture; {extras} picture(s) besides the ones "
                   "to keep" + ("" if trash_extras_ or not extras
                                else " (`clipseek duplicates --trash-extras` moves them to the trash)") + ".")
        if unhashed:
            click.echo(f"{unhashed} indexed picture(s) have no perceptual hash yet and are left out: "
                       "`clipseek reindex --hashes` computes them.", err=True)
        if unpaired:
            click.echo(f"{unpaired} picture(s) hashed earlier are not compared with the others yet and are "
                       "left out for now: the workers' scheduler compares them in the background, "
                       "`clipseek reindex --hashes` at once.", err=True)
    if not (trash_extras_ and extras):
        if as_json:
            click.echo(json.dumps(found, indent=2))
        return
    if not yes and not click.confirm(f"Move {extras} picture(s) to the trash, keeping one of each of "
                                     f"the {len(groups)} group(s)?", err=True):
        click.echo("Nothing was moved.")
        return
    with ctx.db.session() as session:
        deletion = trash_extras(session, groups, store=ctx.settings.image_store,
                                thumbnails=ctx.settings.thumbnails)
    if as_json:
        click.echo(json.dumps({**found, "trashed": deletion.to_dict()}, indent=2))
        return
    click.echo(f"Moved {len(deletion.image_ids)} picture(s) to the trash.")
    for path, why in deletion.not_removed.items():
        click.echo(f"Could not remove {path} ({why}); delete it by hand.", err=True)
