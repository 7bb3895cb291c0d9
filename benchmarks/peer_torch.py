"""The PyTorch peer: pidx's four architectures, loss and optimizer, trained the way a PyTorch user would.

Same layer sizes and parameter counts as pidx (printed by `throughput.py`), the same focal loss
with class weights, Adam 1e-3, data resident on the device, a plain loop over shuffled batches,
and a validation pass each epoch. `torch.compile` is optional.

Needs PyTorch (`pip install torch==2.13.0`; the CPU build is enough on a CPU machine).
"""

from __future__ import annotations

import time

import torch
from torch import nn

GROUP_SLICES = ((0, 5), (5, 10), (10, 14), (14, 19))  # tpc, tof, bayes, kinematics (pidx DEFAULT_LAYOUT)
NUM_FEATURES, NUM_GROUPS, NUM_CLASSES = 22, 4, 4


class SimpleNN(nn.Module):
    def __init__(self, hidden=(512, 256, 128, 64), dropout=0.5):
        super().__init__()
        sizes = [NUM_FEATURES, *hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], NUM_CLASSES))

    def forward(self, x, mask):
        return self.net(x)


class DNN(nn.Module):
    def __init__(self, hidden=(1024, 512, 256, 128, 64), dropout=0.5):
        super().__init__()
        sizes = [NUM_FEATURES, *hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            # no bias in front of BatchNorm, as pidx's DNN (the normalisation removes it)
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b, momentum=0.01), nn.ReLU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], NUM_CLASSES))

    def forward(self, x, mask):
        return self.net(x)


class FSEAttention(nn.Module):
    def __init__(self, hidden_dim=64, num_heads=4, head_hidden=(128, 64), dropout=0.5, extra_head_inputs=0):
        super().__init__()
        self.embed = nn.ModuleList(nn.Linear(b - a, hidden_dim) for a, b in GROUP_SLICES)
        self.attn = nn.MultiheadAttention(hidden_dim, num_heads, bias=False, batch_first=True)
        self.norm = nn.LayerNorm(hidden_dim)
        self.gate = nn.Linear(hidden_dim, hidden_dim)
        sizes = [hidden_dim + extra_head_inputs, *head_hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.head = nn.Sequential(*layers, nn.Linear(sizes[-1], NUM_CLASSES))

    def encode(self, x, mask):
        tokens = torch.stack([torch.relu(e(x[:, a:b])) for e, (a, b) in zip(self.embed, GROUP_SLICES)], 1)
        tokens = tokens * mask[..., None]
        attn, _ = self.attn(tokens, tokens, tokens, key_padding_mask=~mask, need_weights=False)
        h = self.norm(tokens + attn)
        h = torch.sigmoid(self.gate(h)) * h
        w = mask.to(h.dtype)[..., None]
        return (h * w).sum(1) / w.sum(1).clamp(min=1.0)

    def forward(self, x, mask):
        return self.head(self.encode(x, mask))


class DetectorAwareFSE(FSEAttention):
    def __init__(self, pattern_dim=16, group_dropout=0.08, **kw):
        super().__init__(extra_head_inputs=pattern_dim, **kw)
        d = self.gate.in_features
        self.group_dropout = group_dropout
        self.pattern_embed = nn.Linear(NUM_GROUPS, pattern_dim)
        self.pattern_gate, self.pattern_scale, self.pattern_shift = (nn.Linear(pattern_dim, d) for _ in range(3))
        self.register_buffer("droppable", torch.tensor([True, True, True, False]))

    def forward(self, x, mask):
        if self.training and self.group_dropout > 0:
            hide = (torch.rand(mask.shape, device=mask.device) < self.group_dropout) & self.droppable
            mask = mask & ~hide
        pooled = self.encode(x, mask)
        e = torch.relu(self.pattern_embed(mask.to(x.dtype)))
        pooled = pooled * torch.sigmoid(self.pattern_gate(e))
        pooled = pooled * (1 + self.pattern_scale(e)) + self.pattern_shift(e)
        return self.head(torch.cat([pooled, e], 1))


MODELS = {"simplenn": SimpleNN, "dnn": DNN, "fse_phase0": FSEAttention, "fse_phase1": DetectorAwareFSE}


def focal_loss(logits, labels, class_weights, gamma=2.0, alpha=0.25):
    logp = torch.log_softmax(logits.float(), -1).gather(1, labels[:, None])[:, 0]
    return (class_weights[labels] * -alpha * (1 - logp.exp()) ** gamma * logp).mean()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(name: str, train_data, val_data, class_weights, *, batch_size: int, epochs: int, device: str = "cpu",
          compile: bool = False, model_kwargs: dict | None = None, seed: int = 231, precision: str = "f32") -> dict:
    """Train like a PyTorch user; returns train tracks/s (after a warm-up epoch) and the model.
    `precision="bf16"`: `torch.autocast` to bfloat16 (f32 weights and optimizer), as pidx's bf16."""
    torch.manual_seed(seed)
    model = MODELS[name](**(model_kwargs or {})).to(device)
    step_model = torch.compile(model) if compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, m, y = (t.to(device) for t in train_data)
    vx, vm, vy = (t.to(device) for t in val_data)
    w = class_weights.to(device)
    n = len(y) // batch_size * batch_size
    times = []
    for epoch in range(epochs + 1):  # epoch 0 warms up (allocator, compile)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(y), device=device)[:n].view(-1, batch_size)
        for idx in perm:
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = focal_loss(step_model(x[idx], m[idx]).float(), y[idx], w)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum((step_model(vx[i:i + 65536], vm[i:i + 65536]).argmax(1) == vy[i:i + 65536]).sum().item()
                          for i in range(0, len(vy), 65536))
        if device == "cuda":
            torch.cuda.synchronize()
        if epoch:
            times.append(time.perf_counter() - start)
    return {"tracks_per_s": n * epochs / sum(times), "val_accuracy": correct / len(vy),
            "parameters": count_parameters(model)}


__all__ = ["MODELS", "focal_loss", "count_parameters", "train"]
