"""Workload B1 in snnTorch (eager PyTorch, on the GPU when CUDA has one): a peer for the speed comparison.

Written the way snnTorch's tutorials train a network: ``nn.Linear`` layers and
``snn.Leaky(beta=0.9, threshold=1, reset_mechanism="subtract",
spike_grad=surrogate.fast_sigmoid(slope=25))`` neurons stepped by a Python
loop over time, ``nn.CrossEntropyLoss`` on the output spike counts and
``torch.optim.Adam``. The number of threads is PyTorch's default. When
``torch.cuda.is_available()`` the net, data and optimizer live on the GPU, as the
JAX implementations' do under a CUDA jaxlib.

snnTorch's Leaky follows the same recurrence as the reference
(``v_t = 0.9 v_{t-1} + W x_t + b - s_{t-1}``, ``s_t = H(v_t - 1)``) but detaches
the reset term from the graph, as snnTorch always does.

Run in the peer environment::

    .venv-peers/bin/python bench/b1_snntorch.py --T 25 --hidden 256 --batch 128

It prints one JSON line (see ``bench/common.py``).

References:
    Eshraghian et al., Training spiking neural networks using lessons from deep
    learning, arXiv 2109.12894.
"""

from __future__ import annotations

import snntorch as snn
import torch
from common import (
    DECAY,
    LEARNING_RATE,
    N_IN,
    N_OUT,
    SLOPE,
    THRESHOLD,
    b1_arguments,
    b1_batch,
    emit_b1_record,
    package_versions,
    time_steps,
)
from snntorch import surrogate
from torch import nn


class Net(nn.Module):
    """784-hidden-10 MLP of snnTorch Leaky neurons with the fast-sigmoid surrogate."""

    def __init__(self, hidden: int):
        super().__init__()
        spike_grad = surrogate.fast_sigmoid(slope=SLOPE)

        def leaky() -> snn.Leaky:
            return snn.Leaky(beta=DECAY, threshold=THRESHOLD, reset_mechanism="subtract", spike_grad=spike_grad)

        self.fc1 = nn.Linear(N_IN, hidden)
        self.lif1 = leaky()
        self.fc2 = nn.Linear(hidden, N_OUT)
        self.lif2 = leaky()

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Output spike counts ``(batch, 10)`` for time-major input spikes ``(T, batch, 784)``."""
        mem1 = self.lif1.reset_mem()
        mem2 = self.lif2.reset_mem()
        counts = 0
        for x_t in spikes:
            spk1, mem1 = self.lif1(self.fc1(x_t), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            counts = counts + spk2
        return counts


def main() -> None:
    args = b1_arguments("snntorch")
    spikes_np, labels_np = b1_batch(args.T, args.batch, args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spikes = torch.from_numpy(spikes_np).to(device)
    labels = torch.from_numpy(labels_np).long().to(device)

    torch.manual_seed(args.seed)
    net = Net(args.hidden).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()

    def step(_):
        optimizer.zero_grad()
        loss = loss_fn(net(spikes), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    losses = []

    def block(loss: float) -> float:  # .item() copies the loss to the host, so the step has finished
        losses.append(loss)
        return loss

    _, compile_s, warmup_s, times, cpu = time_steps(step, None, warmup=args.warmup, steps=args.steps, block=block)
    emit_b1_record(
        "snntorch",
        args,
        compile_s=compile_s,
        warmup_s=warmup_s,
        times_s=times, cpu_s=cpu,
        versions=package_versions(["snntorch", "torch", "numpy"]) | {"torch_threads": str(torch.get_num_threads())},
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        loss_first=losses[0],
        loss_last=losses[-1],
    )


if __name__ == "__main__":
    main()
