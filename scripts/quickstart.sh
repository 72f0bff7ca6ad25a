#!/usr/bin/env bash
# Set up, train the short recipe on Multi30k en->de, translate test_2016_flickr with beam 5,
# print BLEU and write alignment heatmaps. Run from the repository root.
# Uses $NMT_DATA as the corpus folder if set; otherwise downloads Multi30k into data/multi30k.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.13.0          # before anything that needs torch
pip install -q -e .
RUN=outputs/quickstart   # run again, it continues or reuses this run; delete it to train anew
nmt-train experiment=quick hydra.run.dir="$RUN"
DATA="${NMT_DATA:-data/multi30k}"
corpus_file() { if [ -f "$DATA/$1.gz" ]; then echo "$DATA/$1.gz"; else echo "$DATA/$1"; fi; }
nmt-translate checkpoint="$RUN/checkpoints/best.pt" input="$(corpus_file test_2016_flickr.en)" \
  output="$RUN/test_2016_flickr.hyp.de" reference="$(corpus_file test_2016_flickr.de)" \
  heatmaps=true max_heatmaps=20 heatmap_dir="$RUN/translate_heatmaps" search.beam_size=5
echo "translations: $RUN/test_2016_flickr.hyp.de"
echo "heatmaps:     $RUN/translate_heatmaps/*.png (training-time ones in $RUN/heatmaps/)"
