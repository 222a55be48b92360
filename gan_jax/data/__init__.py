"""Training and evaluation data as numpy arrays: TFDS, image folders, digits, toy.

Public API (what the training loop uses; metrics and benchmarks also reach into
the source modules, e.g. `data.digits` for its fixed splits):
  create_train_iterator(data_config, *, data_shape, batch_size, seed,
                        shard_index=0, shard_count=1, labels=False, updates_per_batch=1)
      -> DataIterator of {'images': f32[B, *data_shape], 'labels': i32[B]}
         ('labels' only when labels=True; -1 = unlabelled)
  load_eval_data(data_config, *, data_shape, split, num_examples, labels=False)
      -> f32[N, *data_shape], or (f32[N, *data_shape], i32[N]) with labels
  class_names(data_config) -> list[str];  num_classes(data_config) -> int
  Prefetcher(iterator, to_device, depth).get()
      -> (device batch, iterator state after it, seconds waited)
  digits_split(split) -> (f32[N, 8, 8] in 0..16, int64[N] labels)
Sources (`data_config.source`): see SOURCES; images are NHWC float32 in
[-1, 1], toy points f32[N, 2] (under 'images' in training batches).

Layout: sources.py (registry: how each source opens a split), one file per
source (digits, tfds_source, image_folder, toy), images.py (crop / resize),
subset.py (train_examples, labels_per_class), decode.py (parallel decoding,
cache), iterator.py (shard order, batch makers, DataIterator), pipeline.py
(the two entry points), prefetch.py.
"""

from gan_jax.data.decode import CACHE_MODES
from gan_jax.data.digits import digits_split
from gan_jax.data.images import CROPS
from gan_jax.data.iterator import DataIterator
from gan_jax.data.pipeline import create_train_iterator
from gan_jax.data.pipeline import load_eval_data
from gan_jax.data.prefetch import Prefetcher
from gan_jax.data.sources import class_names
from gan_jax.data.sources import num_classes
from gan_jax.data.sources import SOURCES
from gan_jax.data.subset import UNLABELLED
from gan_jax.data.tfds_source import TESTED_DATASETS
from gan_jax.data.toy import mixture
from gan_jax.data.toy import MIXTURES
from gan_jax.data.toy import sample_mixture

__all__ = [
    'CACHE_MODES', 'CROPS', 'DataIterator', 'MIXTURES', 'Prefetcher',
    'SOURCES', 'TESTED_DATASETS', 'UNLABELLED', 'class_names',
    'create_train_iterator', 'digits_split', 'load_eval_data', 'mixture',
    'num_classes', 'sample_mixture',
]
