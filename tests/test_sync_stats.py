"""Adaptive-threshold statistics all-reduced over processes (2-process gloo on CPU)."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sj_ext.functional import membrane_stats
from sj_ext.loss import ConfidenceAwareLoss
from sj_ext.neuron import AdaptiveThresholdLIF, sync_threshold_stats


def batch():
    torch.manual_seed(0)
    return 1.5 * torch.randn(3, 8, 4, 5, 5) + 0.3  # [T, N, C, H, W], split over N


def worker(rank: int, init_file: str, out_file: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    x = batch()[:, rank * 4 : (rank + 1) * 4]
    results = {}
    for stats in ("layer", "channel"):
        mu, sigma = membrane_stats(x[0], stats, dist.group.WORLD)
        node = AdaptiveThresholdLIF(stats=stats, step_mode="m")
        assert sync_threshold_stats(node) == 1
        spikes = node(x)
        results[stats] = (mu, sigma, spikes, node.threshold_seq, node.running_threshold)
    if rank == 0:
        gathered = [None, None]
        dist.gather_object(results, gathered, dst=0)
        torch.save(gathered, out_file)
    else:
        dist.gather_object(results, None, dst=0)
    dist.destroy_process_group()


def test_synced_statistics_equal_those_of_the_whole_batch(tmp_path):
    out = tmp_path / "out.pt"
    mp.spawn(worker, args=(str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ranks = torch.load(out, weights_only=False)
    x = batch()
    for stats in ("layer", "channel"):
        mu, sigma = membrane_stats(x[0], stats)  # one process, the whole batch
        node = AdaptiveThresholdLIF(stats=stats, step_mode="m")
        spikes = node(x)
        for rank, results in enumerate(ranks):
            r_mu, r_sigma, r_spikes, r_thresholds, r_running = results[stats]
            torch.testing.assert_close(r_mu, mu)
            torch.testing.assert_close(r_sigma, sigma)
            torch.testing.assert_close(r_thresholds, node.threshold_seq)
            torch.testing.assert_close(r_running, node.running_threshold)
            assert torch.equal(r_spikes, spikes[:, rank * 4 : (rank + 1) * 4])
        # unsynced, each half would see other statistics
        half_mu, _ = membrane_stats(x[0][:4], stats)
        assert not torch.allclose(half_mu, mu)


def loss_worker(rank: int, init_file: str, out_file: str):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    results = {}
    for tau in ("batch", "ema"):
        criterion = ConfidenceAwareLoss(tau=tau)
        for out, y in loss_batches():  # this process's half of each batch
            criterion(out[:, rank * 4 : (rank + 1) * 4], y[rank * 4 : (rank + 1) * 4])
        results[tau] = (criterion.last_tau, criterion.state_dict())
    gathered = [None, None] if rank == 0 else None
    dist.gather_object(results, gathered, dst=0)
    if rank == 0:
        torch.save(gathered, out_file)
    dist.destroy_process_group()


def loss_batches():
    torch.manual_seed(1)
    return [(torch.randn(3, 8, 10) * (k + 1), torch.randint(0, 10, (8,))) for k in range(3)]


def test_the_loss_threshold_is_that_of_the_global_batch_on_every_process(tmp_path):
    # CL-SNN's 'batch' / 'ema' threshold under DDP: the mean loss over all processes,
    # so every process holds the same tau_ema (a resumed DDP run is then exact)
    out = tmp_path / "out.pt"
    mp.spawn(loss_worker, args=(str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ranks = torch.load(out, weights_only=False)
    for tau in ("batch", "ema"):
        whole = ConfidenceAwareLoss(tau=tau)  # one process, the whole batches
        for out_, y in loss_batches():
            whole(out_, y)
        for results in ranks:
            last_tau, state = results[tau]
            torch.testing.assert_close(last_tau, whole.last_tau)
            for key, value in whole.state_dict().items():
                torch.testing.assert_close(state[key], value)
        half = ConfidenceAwareLoss(tau=tau)  # unsynced, a process would see another tau
        for out_, y in loss_batches():
            half(out_[:, :4], y[:4])
        assert not torch.allclose(half.last_tau, whole.last_tau)
