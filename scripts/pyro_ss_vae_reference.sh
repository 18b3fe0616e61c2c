#!/usr/bin/env bash
# Run Pyro's own semi-supervised example (examples/vae/ss_vae_M2.py) on this machine, as the
# reference for scripts/bench_semi_supervised.py: same data split (the last 10,000 training
# images for validation), same networks and settings, Pyro's own training loop.
#
# Usage: scripts/pyro_ss_vae_reference.sh PYRO_CHECKOUT MNIST_RAW_PARENT LABELS BATCH EPOCHS SEED LOG
#   PYRO_CHECKOUT     a git checkout of pyro-ppl/pyro (the example is read from its HEAD)
#   MNIST_RAW_PARENT  the folder holding MNIST/raw in torchvision's layout (e.g. ../shared/data)
#   LABELS            labelled images (the example asserts LABELS % BATCH == 0)
#   BATCH             batch size (the example's default is 200; 100 labels need 100 or less)
#
# The example is copied to a temporary folder and changed in three places only, none of which
# touches the model, the guide, the objective or the loop: the visdom and plotting imports are
# dropped (visualization is off), its pyro version assertion is dropped, and its data loader
# reads MNIST from MNIST_RAW_PARENT without downloading. Its per-epoch lines go to LOG.
set -euo pipefail
if [ $# -ne 7 ]; then
  echo "usage: $0 PYRO_CHECKOUT MNIST_RAW_PARENT LABELS BATCH EPOCHS SEED LOG" >&2
  exit 2
fi
pyro_repo=$1 mnist=$(cd "$2" && pwd) labels=$3 batch=$4 epochs=$5 seed=$6 log=$(realpath -m "$7")
work=$(mktemp -d)
for f in ss_vae_M2.py utils/custom_mlp.py utils/mnist_cached.py; do
  mkdir -p "$work/$(dirname "$f")"
  git -C "$pyro_repo" show "HEAD:examples/vae/$f" > "$work/$f"
done
touch "$work/utils/__init__.py"
mkdir -p "$work/data"
ln -s "$mnist/MNIST" "$work/data/MNISTCached"  # torchvision looks in ROOT/<class name>/raw
sed -i -e 's/^from visdom import Visdom$/Visdom = None/' \
       -e 's/^from utils.vae_plots import .*/mnist_test_tsne_ssvae = plot_conditional_samples_ssvae = None/' \
       -e 's/^    assert pyro.__version__.startswith(.*)$/    pass/' \
       -e "s#data_loaders = setup_data_loaders(#data_loaders = setup_data_loaders(root=\"$work/data\", download=False, dataset=#" \
       -e 's/^            MNISTCached, args.cuda, args.batch_size, sup_num=args.sup_num$/            MNISTCached, use_cuda=args.cuda, batch_size=args.batch_size, sup_num=args.sup_num/' \
       "$work/ss_vae_M2.py"
echo "pyro example at $(git -C "$pyro_repo" rev-parse HEAD)" >&2
cd "$work"
python -u ss_vae_M2.py --seed "$seed" -n "$epochs" --aux-loss -alm 46 -enum parallel -sup "$labels" -zd 50 -hl 500 \
  -lr 0.00042 -b1 0.9 -bs "$batch" -log "$log"
