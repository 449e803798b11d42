#!/usr/bin/env bash
# The ablations behind docs/tricks.md (the report card): each claim measured with
# `gantrix ablate` over 3 seeds. Run from the repository root:
#
#   bash bench/report_card.sh [NAME ...]      # all, or only the named ablations
#
# Each ablation folder goes under $ABLATIONS (default runs/report-card) and resumes when run
# again; its table, JSON and plot are copied to docs/ablations/NAME.{md,json,png}.
# Cells train with 1 CPU thread each, $JOBS at a time (default: the usable cores).
set -euo pipefail
ABLATIONS=${ABLATIONS:-runs/report-card}
SEEDS=${SEEDS:-3}
JOBS=${JOBS:-}
declare -A ABLATE=(
  # relativistic vs standard losses, on 2-D mixtures: SGAN's non-saturating loss swapped for each
  [losses-ring8]="--trick nonsaturating --data ring8 --steps 1500 --swap nonsaturating=rsgan --swap nonsaturating=rasgan --swap nonsaturating=lsgan --swap nonsaturating=ralsgan --swap nonsaturating=hinge --swap nonsaturating=rahinge"
  [losses-grid25]="--trick nonsaturating --data grid25 --steps 1500 --swap nonsaturating=rsgan --swap nonsaturating=rasgan --swap nonsaturating=lsgan --swap nonsaturating=ralsgan --swap nonsaturating=hinge --swap nonsaturating=rahinge"
  # "G smaller than D" (NIPS 2016 tutorial): D's width swept against G's
  [capacity-ring8]="--trick nonsaturating --data ring8 --steps 1500 --add smaller-generator:critic_scale=0.25 --add smaller-generator:critic_scale=0.5 --add smaller-generator:critic_scale=2 --add smaller-generator:critic_scale=4"
  # WGAN (Arjovsky et al. 2017): optimizer, clipping vs penalty, the clip value, no sigmoid/log
  [wgan-ring8]="--recipe wgan --data ring8 --steps 1000 --swap rmsprop=adam --swap rmsprop=sgd --swap weight-clip=gradient-penalty --add weight-clip:c=0.1 --add weight-clip:c=0.001 --swap wgan=minimax"
  # WGAN-GP (Gulrajani et al. 2017): penalty at interpolates vs at the samples, lambda, n-critic
  [wgan-gp-ring8]="--recipe wgan-gp --data ring8 --steps 1000 --add gradient-penalty:interpolate=false --add gradient-penalty:weight=1 --add gradient-penalty:weight=0.01 --add n-critic:n=1"
  # the anti-collapse tricks on Stacked MNIST with a critic a quarter of G's size (PacGAN's
  # Table 3 setting; unrolled and minibatch discrimination left out: 3-5x the CPU of a cell;
  # mode-seeking and top-k are measured on grid25 in docs/results.md)
  [anticollapse-stacked]="--config bench/stacked-mnist/dcgan-dquarter.toml --data stacked-mnist --steps 5000 --keep dcgan --keep adam --add pac:2 --add feature-matching --add minibatch-stddev"
  # InfoGAN (Chen et al. 2016): the mutual-information term, on the agreement of the
  # categorical code with the classified digit (the codes kept, their term's weights 0)
  [infogan-digits]="--recipe infogan --data digits --steps 3000 --keep infogan --keep adam --add infogan:weight=0,continuous_weight=0 --metric code_mi"
  # DCGAN's rules one by one (Radford et al. 2016), and SELU instead of BatchNorm
  [dcgan-digits]="--recipe dcgan --data digits --steps 500 --add dcgan:resample=pool --add dcgan:generator_norm=none --add dcgan:critic_norm=none --add dcgan:hidden_fc=true --add dcgan:generator_output=none --add dcgan:critic_act=relu --add dcgan:generator_act=leaky --add selu"
)
ORDER=(losses-ring8 wgan-gp-ring8 wgan-ring8 dcgan-digits capacity-ring8 anticollapse-stacked infogan-digits losses-grid25)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")
mkdir -p docs/ablations
for name in "${names[@]}"; do
  args=${ABLATE[$name]:?unknown ablation $name (known: ${ORDER[*]})}
  echo "== $name: gantrix ablate $args --seeds $SEEDS" >&2
  # shellcheck disable=SC2086
  gantrix ablate $args --seeds "$SEEDS" ${JOBS:+--jobs "$JOBS"} --out "$ABLATIONS/$name" > /dev/null
  for ext in md json png; do
    cp "$ABLATIONS/$name/ablation.$ext" "docs/ablations/$name.$ext"
  done
done
