"""Training and evaluation data as numpy arrays: TFDS, image folders, digits, toy.

Public API (the training loop, metrics and benchmarks use exactly this):
  create_train_iterator(data_config, *, data_shape, batch_size, seed,
                        shard_index=0, shard_count=1) -> DataIterator
  load_eval_data(data_config, *, data_shape, split, num_examples)
      -> f32[N, *data_shape]
  digits_split(split) -> (f32[N, 8, 8] in 0..16, int64[N] labels)
Sources (`data_config.source`): see SOURCES; images are NHWC float32 in
[-1, 1], toy data f32[N, 2].
"""

from gan_jax.data.digits import digits_split
from gan_jax.data.images import CROPS
from gan_jax.data.pipeline import create_train_iterator
from gan_jax.data.pipeline import DataIterator
from gan_jax.data.pipeline import load_eval_data
from gan_jax.data.pipeline import SOURCES
from gan_jax.data.tfds_source import TESTED_DATASETS
from gan_jax.data.toy import mixture
from gan_jax.data.toy import MIXTURES
from gan_jax.data.toy import sample_mixture

__all__ = [
    'CROPS', 'DataIterator', 'MIXTURES', 'SOURCES', 'TESTED_DATASETS',
    'create_train_iterator', 'digits_split', 'load_eval_data', 'mixture',
    'sample_mixture',
]
