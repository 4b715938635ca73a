"""The memory walker: the protocol on a tiny graph (K paths, determinism, M = 0, wiping), what it reads and
writes, the state view, training on regional sub-graphs, and the shipped checkpoint."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch

import citypath
from citypath.evaluate import sample_heldout_pairs
from citypath.models import catalogue
from citypath.models.base import count_parameters
from citypath.models.memory import MemoryConfig, MemoryModel, empty_memory, full_graph_walks, walk_batch
from tests.protocol import check_near_card, check_refine_protocol, check_state_views


@pytest.fixture(scope="module")
def pairs(tiny_graph):
    s, t = sample_heldout_pairs(tiny_graph, 8, seed=6)
    return list(zip(s.tolist(), t.tolist()))


def test_refine_yields_k_legal_paths_best_so_far_and_is_deterministic(tiny_graph, pairs):
    m = MemoryModel.untrained(tiny_graph, MemoryConfig(max_steps=4), seed=1)
    assert m.num_parameters == count_parameters(m.net) <= 50_000
    check_refine_protocol(m, tiny_graph, pairs[:4], 4)


def test_each_walk_writes_memory_and_later_walks_read_it(tiny_graph, pairs):
    g = tiny_graph
    m = MemoryModel.untrained(g, MemoryConfig(slots=16), seed=2)
    src, dst = pairs[0]
    w = full_graph_walks(g, src, dst)
    mem = empty_memory(1, m.config)
    with torch.no_grad():
        first = walk_batch(m.net, w, mem, record_reads=True)
        assert mem["filled"].sum() == min(len(first.paths[0]) - 1, 16)       # one slot per hop (ring)
        assert set(mem["city"][0][mem["city"][0] >= 0]) <= set(first.paths[0])
        keys = mem["k"].clone()
        second = walk_batch(m.net, w, mem, record_reads=True)
    assert first.reads == [] or all(r[1].sum() == 0 for r in first.reads[:1])   # walk 1 reads an empty memory
    assert any(r[1].sum() > 0 for r in second.reads)                             # walk 2 reads walk 1's slots
    assert not torch.equal(keys, torch.zeros_like(keys))


def test_without_memory_every_walk_is_the_same(tiny_graph, pairs):
    g = tiny_graph
    m = MemoryModel.untrained(g, MemoryConfig(slots=0, max_steps=3), seed=3)
    for src, dst in pairs[:3]:
        walks = [p for p, _, _ in m._run(g, src, dst, 3)]
        assert walks[0] == walks[1] == walks[2]
    flops = m.step_flops(g, *pairs[0], 3)
    assert all(f > 0 for f in flops)


def test_wiping_the_memory_makes_the_next_walk_the_first_again(tiny_graph, pairs):
    g = tiny_graph
    m = MemoryModel.untrained(g, MemoryConfig(slots=16, wipe_after=2, max_steps=4), seed=4)
    src, dst = pairs[1]
    walks = [p for p, _, _ in m._run(g, src, dst, 4)]
    assert walks[2] == walks[0]                 # walk 3 starts on an empty memory, as walk 1 did


def test_state_view_per_step(tiny_graph, pairs):
    g = tiny_graph
    m = MemoryModel.untrained(g, MemoryConfig(slots=16), seed=5)
    src, dst = pairs[2]
    views = check_state_views(m, g, src, dst, 3, ["memory read attention (summed over the walk)",
                                                  "cities the memory holds"])
    assert views[0][1].values.sum() > 0                  # walk 1 wrote where it went
    attended = np.flatnonzero(views[1][0].values > 0)
    held = np.flatnonzero(views[0][1].values + views[1][1].values > 0)
    assert len(attended) and set(attended) <= set(held)   # attention lands on cities written in memory


def test_training_step_learns_through_the_memory(default_graph):
    from citypath.tasks import memory as tm

    args = types.SimpleNamespace(size="small", set=["queries_per_batch=4", "val_paths=2", "max_passes=2"],
                                 command_line="test")
    task, cfg = tm.training_task(default_graph, args)
    net = task.build_model()
    batch, _ = task.batch(1, 0, 1)
    ep = dataclasses.replace(batch["episode"], passes=2)
    loss, count = net(ep)
    loss.backward()
    assert torch.isfinite(loss) and count > 0
    assert net.key.weight.grad is not None and net.key.weight.grad.abs().sum() > 0     # memory is in the graph
    assert net.verdict.weight.grad is not None


@pytest.mark.parametrize("name", [e.name for e in catalogue()[0] if e.family == "memory"])
def test_shipped_checkpoint_scores_near_its_card(default_graph, name):
    m = check_near_card(default_graph, name, valid_tol=0.15, ratio_tol=0.03)
    assert m.num_parameters <= 50_000


def test_a_dead_end_is_backed_out_of_at_inference(tiny_graph):
    """Without backtracking a walk that meets a dead end (every neighbour visited) stops there; with it (what
    `refine` runs) the walk steps back and still reaches the target, along a simple path whose every hop is
    an edge, and pays for the moves back in FLOPs. The walker here is the geometric greedy one (the score's
    prior dominating), so the dead ends are the map's, found among training-split pairs."""
    from citypath.split import sample_pairs

    g = tiny_graph
    m = MemoryModel.untrained(g, MemoryConfig(slots=8), seed=0)
    with torch.no_grad():
        m.net.prior.fill_(1e4)
    srcs, dsts = sample_pairs(g.n_cities, 200, np.random.default_rng(3), heldout=False)
    dead_ends = rescued = 0
    for src, dst in zip(srcs.tolist(), dsts.tolist()):
        w = full_graph_walks(g, src, dst)
        with torch.no_grad():
            plain = walk_batch(m.net, w, empty_memory(1, m.config))
            back = walk_batch(m.net, w, empty_memory(1, m.config), backtrack=True)
        p, q = plain.paths[0], back.paths[0]
        if p[-1] == dst:
            assert q == p and back.flops[0] == plain.flops[0]      # nothing to back out of: the same walk
            continue
        dead_ends += set(g.neighbors(p[-1]).tolist()) <= set(p)       # else it ran out of hops
        assert len(q) == len(set(q)) and q[0] == src
        assert citypath.evaluate_paths(g, [q], [src], [dst])["illegal_jumps"].sum() == 0
        if q[-1] == dst:
            rescued += 1
            assert back.flops[0] > plain.flops[0]
    assert dead_ends >= 1 and rescued == dead_ends     # the tiny graph is connected: a dead end is always left


def test_counted_operations_are_the_moves_each_walk_made(tiny_graph, pairs):
    """Each step's operations, pinned against a count by hand: the query's set-up over every city and edge and
    the empty memory on step 1; per walk its arrays; per move (read off the walk's record: its neighbour columns,
    and whether it backed out of a dead end) the controller, read, write and per-column work from the config's
    dimensions; the verdict; the verifier on the walk."""
    from citypath.split import sample_pairs

    g = tiny_graph
    n, edges = g.n_cities, g.adjacency.nnz
    c = MemoryConfig(hidden=16, slots=8, width=4, cand_dim=8, max_steps=3)
    m = MemoryModel.untrained(g, c, seed=0)
    with torch.no_grad():
        m.net.prior.fill_(1e4)                  # the geometric greedy walker: it meets the map's dead ends
    pos, hid, wid, slots, cd = 8, 16, 4, 8, 8
    read = 2 * wid * slots + 3 * slots + 5 * slots + 2 * slots * wid + slots
    cell = 2 * (pos + wid) * 3 * hid + 2 * hid * 3 * hid + 20 * hid

    def move(width):
        ops = 8 * width + pos + (pos + hid) + 2 * (pos + hid) * wid + wid + read + (pos + wid) + cell + hid
        ops += 2 * hid * cd + cd
        column = 33 + pos + 2 * pos * wid + wid + read + (7 + wid) + 2 * (7 + wid) * cd + 2 * cd + 5 * cd + 2 * cd + 8
        ops += width * column + 2 * width + width
        ops += 2 * pos * wid + 2 * hid * wid + 2 * wid + 2 * slots * wid + 2 * slots + 2
        return ops + 6 + 2 * n + 2                     # + the degree arrays and the live scans of the move

    setup = 20 * 2 * n + 2 * n + 3 * 8 * n + 8 * n + 2 * n + edges + 2 * slots * wid + 2 * slots + 1
    verdict = 6 + (hid + 3) + 2 * (hid + 3) * wid + wid + 3 * slots * wid
    srcs, dsts = sample_pairs(n, 200, np.random.default_rng(3), heldout=False)
    stuck = []                                         # pairs whose walk meets a dead end
    for src, dst in zip(srcs.tolist(), dsts.tolist()):
        with torch.no_grad():
            if walk_batch(m.net, full_graph_walks(g, src, dst), empty_memory(1, c)).paths[0][-1] != dst:
                stuck.append((src, dst))
    backed = 0
    for src, dst in stuck[:3] + pairs[:3]:
        run = list(m.refine_with_compute(g, src, dst, 3))
        assert [p for p, _ in run] == list(m.refine(g, src, dst, 3))       # the same routes
        expected = []
        for k, (path, _, out) in enumerate(m._run(g, src, dst, 3)):
            moves = len(out.cands)
            backs = [h for h in range(moves - 1) if not torch.isfinite(out.logits[h]).any()]
            backed += len(backs)
            ops = (setup if k == 0 else 0) + n + hid + slots + 6 + verdict + 4 * (len(path) - 1)
            ops += sum(move(out.cands[h].shape[1]) for h in range(moves))
            ops += sum(out.cands[h].shape[1] + 3 for h in backs)
            expected.append(ops)
        assert [f for _, f in run] == pytest.approx(expected, rel=1e-12)
    assert backed > 0                                  # the way back out of a dead end was counted too
