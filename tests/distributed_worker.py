"""A training process for tests/test_distributed.py: trains a small pair and records, after
every step, its loss and all parameters (``python distributed_worker.py OUT``;
rank r of a group writes ``OUT`` with ``-rank{r}`` before ``.pt``).

Run alone it is a single process; with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set it is one rank of a data-parallel group.
"""

import sys

import torch

from ppl_vae import ModelConfig, TrainConfig, Trainer, build_pair, load_dataset
from ppl_vae.training.distributed import init_distributed

CONFIG = ModelConfig(event_shape=(1, 28, 28), z_dim=4, hidden_dims=(32,), likelihood="bernoulli", guide="iaf",
                     guide_options={"num_flows": 2, "hidden_dims": (16,)})


def main(out: str) -> None:
    torch.set_num_threads(1)
    distributed = init_distributed(torch.device("cpu"), timeout_s=60)
    data = load_dataset("binarized-mnist-sample")
    data.train, data.test = data.train[:2000], data.test[:500]
    torch.manual_seed(0)
    model, guide = build_pair(CONFIG)
    trainer = Trainer(model, guide, data, TrainConfig(epochs=2, batch_size=250, seed=1), distributed=distributed)
    losses, params = [], []

    def after_step(step: int) -> None:  # the step's loss: the epoch's running sum, differenced
        losses.append(trainer.total - (sum(losses[-trainer.step_in_epoch + 1:]) if trainer.step_in_epoch > 1 else 0.0))
        params.append(torch.cat([p.detach().reshape(-1) for p in [*model.parameters(), *guide.parameters()]]))

    metrics = trainer.run(progress=False, after_step=after_step)
    if distributed.is_distributed:
        out = out.replace(".pt", f"-rank{distributed.rank}.pt")
    torch.save({"losses": torch.tensor(losses, dtype=torch.float64), "params": torch.stack(params),
                "test_elbo": torch.tensor(metrics["test_elbo"].tolist(), dtype=torch.float64)}, out)
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
