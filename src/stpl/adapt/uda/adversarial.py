"""Output-space adversarial alignment for the UDA baselines (DA-VSN, VAT-VST): discriminators, their own optimiser,
and the order of the two updates.

Per step, as in the originals: (1) the segmenter is trained with the fooling loss of each discriminator on the
target predictions, the discriminators held fixed (their parameters collect no gradient); (2) after the
segmenter's update (`Method.after_step`), each discriminator is trained on the step's source and target
predictions, detached, with its own Adam (lr 1e-4, betas 0.9 / 0.99, the originals' setting).
Each discriminator is named: "spatial" sees the probabilities of frame t, [B,K,h,w]; "temporal" sees those of
frame t and the earlier frame's warped to t, concatenated, [B,2K,h,w].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stpl.losses.adversarial import discriminator_loss, fooling_loss
from stpl.models.discriminator import Discriminator

DISCRIMINATOR_LR = 1e-4
DISCRIMINATOR_BETAS = (0.9, 0.99)


class AdversarialAlignment:
    def __init__(self, channels: dict[str, int], device: torch.device, seed: int):
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)  # the discriminators' initial weights follow the run's seed, not the global stream
        self.discriminators = nn.ModuleDict({name: Discriminator(c) for name, c in channels.items()}).to(device)
        torch.set_rng_state(generator_state)
        self.optimizer = torch.optim.Adam(
            self.discriminators.parameters(), lr=DISCRIMINATOR_LR, betas=DISCRIMINATOR_BETAS
        )
        self.pending: dict[str, tuple[Tensor, Tensor]] = {}  # name -> (source, target) maps of this step
        self.last_loss = torch.zeros(())

    def fooling(self, name: str, source_probabilities: Tensor, target_probabilities: Tensor) -> Tensor:
        """The segmenter's loss for discriminator `name` (it fixed), and the maps kept for its own update."""
        discriminator = self.discriminators[name]
        discriminator.requires_grad_(False)
        loss = fooling_loss(discriminator(target_probabilities))
        self.pending[name] = (source_probabilities.detach(), target_probabilities.detach())
        return loss

    def update(self) -> None:
        """One Adam step of every discriminator on the maps of the step just taken."""
        if not self.pending:
            return
        with torch.enable_grad():
            self.discriminators.requires_grad_(True)
            self.optimizer.zero_grad(set_to_none=True)
            losses = [
                discriminator_loss(self.discriminators[name](source), self.discriminators[name](target))
                for name, (source, target) in self.pending.items()
            ]
            total = torch.stack(losses).sum()
            total.backward()
            self.optimizer.step()
        self.last_loss = total.detach()
        self.pending = {}

    def extra_state(self) -> dict[str, Tensor]:
        state = {f"discriminator.{key}": value for key, value in self.discriminators.state_dict().items()}
        for index, entry in self.optimizer.state_dict()["state"].items():
            for key, value in entry.items():
                state[f"discriminator_optimizer.{index}.{key}"] = torch.as_tensor(value)
        return state

    def load_extra_state(self, state: dict[str, Tensor]) -> None:
        own = {key.split(".", 1)[1]: value for key, value in state.items() if key.startswith("discriminator.")}
        if own:
            self.discriminators.load_state_dict(own)
        entries: dict[int, dict[str, Tensor]] = {}
        for key, value in state.items():
            if key.startswith("discriminator_optimizer."):
                index, name = key.split(".", 2)[1:]
                entries.setdefault(int(index), {})[name] = value
        if entries:
            full = self.optimizer.state_dict()
            full["state"] = entries
            self.optimizer.load_state_dict(full)
