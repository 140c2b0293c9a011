"""Stage train@MODEL: train one model (by name, from params.yaml `models`) on the inputs its stage lists.

`python stages/train.py ...` trains in one process; `torchrun --nproc_per_node N stages/train.py ...`
(same arguments) trains with DistributedDataParallel over N processes (one GPU each, or gloo on CPU),
rank 0 writing the checkpoint and the dvclive logs (docs/scaling.md)."""
import argparse
import contextlib
from pathlib import Path

from avemo.config import model_config  # avemo first: it pins the CPU kernels before torch loads
from avemo.io import atomic_path, load_params
from avemo.entry import run_stage
from avemo.training import train
from avemo.training.distributed import Distributed
from dvclive import Live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", type=Path, nargs="+", required=True,
                        help="the stage outputs the model reads (data/features/NAME, data/faces)")
    parser.add_argument("--metadata", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--live", type=Path, required=True, help="dvclive directory")
    parser.add_argument("--rank-report", type=Path, default=None,
                        help="under torchrun: a directory for one rank<R>.json per process (its metrics, "
                             "parameter checksum and the clips it trained on), to check a distributed run")
    args = parser.parse_args()
    dist = Distributed()

    def body():
        cfg = model_config(load_params(), args.model, inputs=[str(p) for p in args.inputs],
                           metadata=str(args.metadata), checkpoint=str(args.checkpoint))
        # Under torchrun only rank 0 logs: the other ranks' numbers are the same or not the ones to keep.
        # dvclive empties its directory when it starts: it logs into a temporary one that replaces the
        # git-tracked logs only once training succeeded (dvc.yaml keeps them with persist: true).
        live_dir = atomic_path(args.live) if dist.main else contextlib.nullcontext()
        with live_dir as tmp:
            logger = Live(str(tmp), save_dvc_exp=False, dvcyaml=False) if dist.main else contextlib.nullcontext()
            with logger as live:
                metrics = train(cfg, live, rank_report=args.rank_report)
        where = f" [rank {dist.rank}/{dist.world_size}]" if dist.enabled else ""
        print(f"train {args.model}{where}: {metrics}")

    run_stage(body)


if __name__ == "__main__":
    main()
