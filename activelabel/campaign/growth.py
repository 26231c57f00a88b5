"""Images added to a running campaign's pool folder (or manifest) join its pool.

Teams keep dropping images into the folder while a campaign runs. Before a *new* round starts
(:func:`activelabel.campaign.steps.start_round`: every round of ``run``, ``watch``, ``serve``)
the pool source is listed again and each file the campaign does not hold yet becomes a pool
sample, the way creation makes one (:func:`~activelabel.campaign.setup.write_sample_rows`):

- its content hash and ``(size, mtime_ns)`` signature are stored; only the *new* files are
  read and hashed (stored files are known by URI, their content checked by
  :mod:`activelabel.campaign.integrity`);
- a file byte-identical to a stored image (or to another new one) is a copy of it
  (``duplicate_of``, creation's rule): never scored, never sent to annotators twice;
- a file that cannot be decoded is stored and recorded as unreadable with the reason (creation
  finds these while scoring; here each one is named in a warning at once): never selected;
- a file that cannot even be opened (removed a moment after the listing, no permission) is
  left out with a warning and looked for again next round.

Everything is written in one transaction. A round already in flight is never touched: a
round that has scored selects only among the samples it scored (``select_step`` reads that
round's scores), and the new samples are scored by the next round. ``data.follow_new_files =
false`` keeps the pool as it was created (a fixed pool for a fair comparison). A ``.npy``
pool is fixed at creation. Images added to ``data.test`` or ``data.labeled`` are not taken:
those sets are read when the campaign is created.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache, list_pool_files
from activelabel.campaign.summary import counted
from activelabel.errors import DatasetError
from activelabel.storage import Campaign, RoundStatus, Sample, SampleSplit, session_scope
from activelabel.campaign.unreadable import warn_unreadable
from activelabel.storage.repository import latest_round, problem_uris, record_problems

log = logging.getLogger(__name__)

#: New images decoded at a time to find unreadable ones (bounded memory at any image size).
DECODE_CHUNK = 256
#: Content hashes per ``IN (...)`` query when looking for stored copies.
_HASHES_PER_QUERY = 500


@dataclass(frozen=True)
class Growth:
    """What one look at the pool source added.

    ``joined``: new samples written (copies included); ``copies``: how many of them are copies
    of an image the campaign holds; ``unreadable``: (URI, reason) of new files stored but
    recorded as unreadable; ``skipped``: (URI, reason) of new files that could not be opened,
    not stored (looked for again next round).
    """

    joined: int = 0
    copies: int = 0
    unreadable: tuple[tuple[str, str], ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def describe_joined(files: int, copies: int, unreadable: int) -> str:
    """The log line's words: how many new files joined and how many of them can be labeled
    (a copy shares its stored twin's label; an unreadable file is never sent)."""
    usable = files - copies - unreadable
    copies_said = counted(copies, "copy of a stored image", "copies of stored images")
    left_out = [part for n, part in ((copies, copies_said), (unreadable, f"{unreadable:,} unreadable")) if n]
    return (f"{counted(files, 'new image')} in data.pool joined the pool, {usable:,} to label"
            + (f" ({', '.join(left_out)})" if left_out else ""))


def join_before_round(engine: Engine, campaign_id: int) -> Growth:
    """Before a new round: :func:`join_new_files` unless a round is still in flight (that
    round keeps the pool it started with). Called by ``steps.start_round`` under the
    campaign's lease, so two processes never add the same files."""
    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        config = CampaignConfig.from_dict(campaign.config)
        last = latest_round(session, campaign_id)
        in_flight = last is not None and last.status != RoundStatus.complete
    if in_flight or not config.uses_own_data or not config.follow_new_files:
        return Growth()
    return join_new_files(engine, campaign_id, config)


def join_new_files(engine: Engine, campaign_id: int, config: CampaignConfig) -> Growth:
    """Add the files ``data.pool`` lists now but the campaign does not hold, as pool samples.

    Cost: one listing of the pool source (a directory walk, or reading the manifest) and one
    query of the stored URIs; only new files are read, hashed and decoded. Raises
    ``DataSourceError`` naming ``data.pool`` when the folder or manifest is gone.
    """
    listed = list_pool_files(config)
    if listed is None:
        return Growth()
    with session_scope(engine) as session:
        stored = set(session.scalars(select(Sample.uri).where(Sample.campaign_id == campaign_id)))
    new = [uri for uri in listed if uri not in stored]
    if not new:
        return Growth()
    clear_cache()  # this process's rounds (and a simulation's truth) now read the pool as it is
    data = campaign_data(config)
    held_elsewhere = set(data.test) | set(data.seeds)  # read at creation only
    fresh = [uri for uri in new if uri not in held_elsewhere]
    if len(fresh) < len(new):
        log.info("campaign %r: %d new images in data.test or data.labeled are not added (those sets are "
                 "read when the campaign is created)", config.name, len(new) - len(fresh))
    hashes, signatures, skipped = _identities(data.store, fresh)
    for uri, reason in skipped[:10]:
        log.warning("campaign %r: new image %s cannot be opened (%s); not added, looked for again next round",
                    config.name, _shown(data, uri), reason)
    fresh = [uri for uri in fresh if uri in hashes]
    if not fresh:
        return Growth(skipped=tuple(skipped))
    growth = _write(engine, campaign_id, config, data, fresh, hashes, signatures)
    return Growth(growth.joined, growth.copies, growth.unreadable, tuple(skipped))


def _write(engine, campaign_id, config, data, fresh, hashes, signatures) -> Growth:
    from activelabel.campaign.setup import _group_copies, check_truth_covers, write_sample_rows

    stands, stored_split = _stored_representatives(engine, campaign_id, set(hashes.values()), data)
    split_of = {uri: SampleSplit.pool for uri in fresh}
    duplicate_of = _group_copies(fresh, hashes, split_of, stands)
    for copy, first in duplicate_of.items():
        # Creation's rule: a copy sits in its representative's split (never test and pool at once).
        split_of[copy] = stored_split.get(first, split_of.get(first, SampleSplit.pool))
    unreadable = _unreadable(data.store, [uri for uri in fresh if uri not in duplicate_of])
    skipped = {uri for uri, _ in unreadable}
    check_truth_covers(config, data, [uri for uri in fresh if uri not in duplicate_of and uri not in skipped],
                       then="the new images were not added and no round was started")
    try:
        with session_scope(engine) as session:
            write_sample_rows(session, campaign_id, split_of, hashes, signatures, duplicate_of)
            record_problems(session, campaign_id, unreadable)
    except IntegrityError:  # a process without the lease added them a moment ago: theirs stand
        log.info("campaign %r: new images in data.pool were added by another process", config.name)
        return Growth()
    log.info("campaign %r: %s", config.name, describe_joined(len(fresh), len(duplicate_of), len(unreadable)))
    warn_unreadable(log, f"campaign {config.name!r}", unreadable, shown=lambda uri: _shown(data, uri),
                    what="new image")
    return Growth(len(fresh), len(duplicate_of), tuple(unreadable))


def _identities(store, uris: Sequence[str]):
    """(hashes, signatures) by URI of the files that could be read, and (URI, reason) of the
    rest. All at once on worker processes; one by one only when some file fails."""
    from activelabel.pipeline.identity import sample_identities

    try:
        digests, stamps = sample_identities(store, uris)
        return dict(zip(uris, digests)), dict(zip(uris, stamps)), []
    except (DatasetError, OSError):
        pass
    hashes, signatures, skipped = {}, {}, []
    for uri in uris:
        try:
            (digest,), (stamp,) = sample_identities(store, [uri], workers=1)
        except (DatasetError, OSError) as error:
            skipped.append((uri, getattr(error, "strerror", None) or str(error)))
            continue
        hashes[uri], signatures[uri] = digest, stamp
    return hashes, signatures, skipped


def _stored_representatives(engine, campaign_id: int, hashes: set[str], data):
    """Content hash -> URI of the stored sample standing for it (the oldest one whose file is
    still there), and those samples' splits. A file renamed in the folder is a new URI with a
    stored hash: its old sample is gone, so the new file stands for the content itself."""
    stands: dict[str, str] = {}
    split: dict[str, SampleSplit] = {}
    wanted = sorted(hashes)
    with session_scope(engine) as session:
        gone = problem_uris(session, campaign_id)
        for start in range(0, len(wanted), _HASHES_PER_QUERY):
            rows = session.execute(
                select(Sample.content_hash, Sample.uri, Sample.split)
                .where(Sample.campaign_id == campaign_id, Sample.duplicate_of.is_(None),
                       Sample.content_hash.in_(wanted[start:start + _HASHES_PER_QUERY]))
                .order_by(Sample.id)
            )
            for digest, uri, where in rows:
                if digest not in stands and uri not in gone and _still_there(data, uri):
                    stands[digest], split[uri] = uri, where
    return stands, split


def _still_there(data, uri: str) -> bool:
    path = data.store.locate(uri) if data.root is not None else None
    return path is None or Path(path).exists()


def _unreadable(store, uris: list[str]) -> list[tuple[str, str]]:
    """(URI, reason) of the images among ``uris`` that cannot be decoded, a chunk at a time."""
    from activelabel.campaign.pixels import read_readable

    problems: list[tuple[str, str]] = []
    for start in range(0, len(uris), DECODE_CHUNK):
        _, _, found = read_readable(store, uris[start:start + DECODE_CHUNK])
        problems.extend(found)
    return problems


def _shown(data, uri: str) -> str:
    """The file's path for a message (the URI when the data has no folder)."""
    return str(data.root / uri) if data.root is not None else uri
