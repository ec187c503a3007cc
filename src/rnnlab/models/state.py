"""The hidden-state policy between training batches, shared by every recurrent LightningModule."""

from __future__ import annotations

from rnnlab.models.cores import detach_state


class CarriedState:
    """Truncated backpropagation through time across batches when the data allows it.

    With sequential partitioning (`continuous` data) the final state of a batch is detached and
    becomes the next batch's initial state; `reset` at each epoch start. Otherwise every batch
    starts from zero (None).
    """

    def __init__(self):
        self.carry, self.state = False, None

    def reset(self, carry: bool) -> None:
        self.carry, self.state = carry, None

    def initial(self):
        return self.state if self.carry else None

    def keep(self, state) -> None:
        if self.carry:
            self.state = detach_state(state)

    # checkpointing: a mid-epoch resume continues from the carried state, as an uninterrupted run does
    def state_dict(self) -> dict:
        return {"carry": self.carry, "state": self.state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.carry, self.state = bool(state_dict["carry"]), state_dict["state"]

    def to(self, device) -> None:
        if isinstance(self.state, tuple):
            self.state = tuple(s.to(device) for s in self.state)
        elif self.state is not None:
            self.state = self.state.to(device)
