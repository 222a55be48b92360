"""Tests for data.train_examples and data.labels_per_class (gan_jax.data.subset and
their use by the training iterator): counts per class, seeding, resumption, shards."""

import logging

import numpy as np
import pytest

import data_helpers as h
from gan_jax import data
from gan_jax import errors
from gan_jax.data import digits as digits_lib
from gan_jax.data import iterator
from gan_jax.data import subset

def _epoch(n, *, seed=0, batch_size=None, **fields):
  """One epoch of the digits subset at 8x8 (one batch), with labels."""
  batch, = h.first_batches(h.config(**fields), 1, data_shape=(8, 8, 1),
                           batch_size=batch_size or n, seed=seed, labels=True)
  return batch


def _rows(images):
  """Hashable rows, to compare which examples two batches hold."""
  return {row.tobytes() for row in images.reshape(len(images), -1)}


@pytest.mark.parametrize('sizes,total,quotas', [
    ([5, 10, 10], 15, [5, 5, 5]),
    ([5, 10, 10], 16, [5, 6, 5]),     # one left over: the lowest open class
    ([2, 10, 10], 12, [2, 5, 5]),     # a small class: the rest share its part
    ([3, 3, 3], 9, [3, 3, 3]),
    ([4, 0, 7], 5, [3, 0, 2]),
])
def test_balanced_quotas(sizes, total, quotas):
  np.testing.assert_array_equal(subset.balanced_quotas(sizes, total), quotas)


def test_select_examples_is_sorted_and_stratified():
  labels = np.repeat([0, 1, 2], [10, 20, 30])
  chosen = subset.select_examples(60, num=12, labels=labels, seed=0)
  assert np.all(np.diff(chosen) > 0)
  np.testing.assert_array_equal(np.bincount(labels[chosen]), [4, 4, 4])


def test_select_examples_without_labels_picks_distinct_indices():
  chosen = subset.select_examples(50, num=7, labels=None, seed=3)
  assert len(set(chosen)) == 7 and chosen.min() >= 0 and chosen.max() < 50


def test_keep_labels_per_class_keeps_true_labels_of_the_chosen():
  labels = np.repeat([0, 1, 2], [5, 2, 6])
  kept = subset.keep_labels_per_class(labels, per_class=3, seed=0)
  assert kept.dtype == np.int32
  # All of class 1 (only 2), 3 of each other class; the rest unlabelled.
  np.testing.assert_array_equal(np.bincount(kept + 1), [5, 3, 2, 3])
  labelled = kept >= 0
  np.testing.assert_array_equal(kept[labelled], labels[labelled])


def test_train_examples_are_equal_per_class():
  batch = _epoch(100, train_examples=100)
  np.testing.assert_array_equal(np.bincount(batch['labels']), [10] * 10)


def test_train_examples_give_the_remainder_to_the_lowest_classes():
  batch = _epoch(105, train_examples=105)
  np.testing.assert_array_equal(np.bincount(batch['labels']),
                                [11] * 5 + [10] * 5)


def test_train_examples_are_one_epoch_of_distinct_examples():
  batch = _epoch(100, train_examples=100)
  assert len(_rows(batch['images'])) == 100  # no example twice


def test_train_examples_are_stratified_without_labels_in_batches():
  with_labels = _epoch(30, train_examples=30)
  plain, = h.first_batches(h.config(train_examples=30), 1,
                           data_shape=(8, 8, 1), batch_size=30, seed=0)
  assert _rows(plain['images']) == _rows(with_labels['images'])


def test_train_examples_are_the_same_for_a_seed():
  assert _rows(_epoch(50, train_examples=50, seed=4)['images']) == _rows(
      _epoch(50, train_examples=50, seed=4)['images'])


def test_train_examples_differ_between_seeds():
  assert _rows(_epoch(50, train_examples=50, seed=0)['images']) != _rows(
      _epoch(50, train_examples=50, seed=1)['images'])


def test_train_examples_over_the_split_size_is_a_config_error():
  with pytest.raises(errors.ConfigError, match='only 1347 examples'):
    data.create_train_iterator(h.config(train_examples=1348),
                               data_shape=(8, 8, 1), batch_size=2, seed=0)


def test_negative_subset_sizes_are_config_errors():
  for field in ['train_examples', 'labels_per_class']:
    with pytest.raises(errors.ConfigError, match='>= 0'):
      data.create_train_iterator(h.config(**{field: -1}), data_shape=(8, 8, 1),
                                 batch_size=2, seed=0)


def test_labels_per_class_that_keeps_every_label_is_a_config_error():
  # The largest digit class of the 100-example subset has 10 examples: 10 per class
  # would leave none unlabelled (a fully supervised run under a semi-supervised config).
  with pytest.raises(errors.ConfigError, match=r'labels_per_class=10 keeps every label.*10 '):
    _epoch(100, train_examples=100, labels_per_class=10)
  assert (_epoch(100, train_examples=100, labels_per_class=9)['labels'] == -1).sum() == 10


def test_classes_smaller_than_labels_per_class_are_named(caplog):
  # Nine classes of 10 and one of 12: 10 per class keeps the nine whole, said in a
  # warning (the config check refuses only a count that keeps every class whole).
  labels = np.repeat(np.arange(10), [10] * 9 + [12])
  with caplog.at_level(logging.WARNING):
    kept = subset.keep_labels_per_class(labels, per_class=10, seed=0)
  assert 'class(es) [0, 1, 2, 3, 4, 5, 6, 7, 8] have only [10, 10' in caplog.text
  assert (kept == -1).sum() == 2  # only the largest class has unlabelled examples
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    subset.keep_labels_per_class(labels, per_class=9, seed=0)
  assert 'have only' not in caplog.text


def test_fewer_examples_than_classes_for_a_conditional_model_is_a_config_error():
  with pytest.raises(errors.ConfigError, match=r'train_examples=5 keeps fewer examples than the '
                                               r'10 classes'):
    _epoch(5, train_examples=5)
  # Without labels (an unconditional model) five digits are a valid, if tiny, set.
  batch, = h.first_batches(h.config(train_examples=5), 1, data_shape=(8, 8, 1),
                           batch_size=5, seed=0)
  assert batch['images'].shape == (5, 8, 8, 1)


def test_labels_per_class_counts():
  labels = _epoch(100, train_examples=100, labels_per_class=3)['labels']
  # 3 labelled per class, the other 70 examples unlabelled (-1).
  np.testing.assert_array_equal(np.bincount(labels + 1), [70] + [3] * 10)


def test_labels_per_class_over_the_whole_split():
  labels = _epoch(1347, labels_per_class=5)['labels']
  # Every digit has >= 100 training examples, so each keeps 5 labels.
  np.testing.assert_array_equal(np.bincount(labels + 1),
                                [1347 - 50] + [5] * 10)


def test_labels_per_class_keep_true_labels():
  unmasked = _epoch(100, train_examples=100)
  masked = _epoch(100, train_examples=100, labels_per_class=2)
  # Same examples in the same order; labels only removed, never changed.
  np.testing.assert_array_equal(unmasked['images'], masked['images'])
  labelled = masked['labels'] >= 0
  np.testing.assert_array_equal(masked['labels'][labelled],
                                unmasked['labels'][labelled])


def test_labelled_examples_are_the_same_for_a_seed():
  first = _epoch(100, train_examples=100, labels_per_class=2, seed=5)
  again = _epoch(100, train_examples=100, labels_per_class=2, seed=5)
  np.testing.assert_array_equal(first['labels'], again['labels'])


def test_labelled_examples_differ_between_seeds():
  def labelled(seed):
    batch = _epoch(1347, labels_per_class=2, seed=seed)
    return _rows(batch['images'][batch['labels'] >= 0])
  assert labelled(0) != labelled(1)


def test_labels_per_class_leave_batches_without_labels_alone():
  plain, = h.first_batches(h.config(labels_per_class=2), 1,
                           data_shape=(8, 8, 1), batch_size=8, seed=0)
  assert list(plain) == ['images']


def test_resume_with_a_subset():
  state = h.check_resume(h.config(train_examples=30, labels_per_class=1),
                         data_shape=(8, 8, 1), batch_size=7, skip=5, more=4,
                         labels=True)
  assert state['examples_per_shard'] == 30 and state['train_examples'] == 30


def test_subset_shards_are_disjoint_and_cover_the_subset():
  whole = _rows(_epoch(60, train_examples=60)['images'])
  shards = [
      _rows(h.first_batches(h.config(train_examples=60), 1,
                            data_shape=(8, 8, 1), batch_size=20, seed=0,
                            shard_index=index, shard_count=3)[0]['images'])
      for index in range(3)
  ]
  assert all(len(s) == 20 for s in shards)
  assert not (shards[0] & shards[1] or shards[0] & shards[2] or
              shards[1] & shards[2])
  assert set.union(*shards) == whole  # chosen before sharding


def test_eval_data_ignores_subsets():
  kwargs = dict(data_shape=(8, 8, 1), split='train', num_examples=200)
  np.testing.assert_array_equal(
      data.load_eval_data(h.config(train_examples=10), **kwargs),
      data.load_eval_data(h.config(), **kwargs))


def test_labelled_fraction_puts_labelled_examples_on_evenly_spread_rows():
  config = h.config(labels_per_class=2, labelled_fraction=0.5)
  batches = h.first_batches(config, 5, data_shape=(8, 8, 1), batch_size=16, seed=0,
                            labels=True)
  for batch in batches:
    # Every second row (1, 3, ..., 15) is labelled; the others are drawn from all
    # 1,347 digits, of which 20 are labelled too.
    assert np.all(batch['labels'][1::2] >= 0)
  # 5 batches x 8 rows = 40 labelled rows: two epochs over the 20 labelled digits,
  # so each appears exactly twice, with its true label.
  labelled = np.concatenate([b['images'][1::2] for b in batches])
  rows = [row.tobytes() for row in labelled.reshape(len(labelled), -1)]
  assert len(set(rows)) == 20 and all(rows.count(row) == 2 for row in set(rows))
  chosen = _epoch(1347, labels_per_class=2)
  truth = {img.tobytes(): label for img, label in zip(
      chosen['images'].reshape(1347, -1), chosen['labels']) if label >= 0}
  got = np.concatenate([b['labels'][1::2] for b in batches])
  assert [truth[row] for row in rows] == list(got)


def test_labelled_fraction_keeps_the_unlabelled_rows_a_shuffled_walk_of_all():
  batch, = h.first_batches(h.config(labels_per_class=2, labelled_fraction=0.25), 1,
                           data_shape=(8, 8, 1), batch_size=1348, seed=0, labels=True)
  # 337 labelled rows (rows 3, 7, ...); the other 1,011 are distinct examples of
  # the first epoch's permutation of all 1,347 (some of them labelled too).
  assert np.all(batch['labels'][3::4] >= 0)
  others = batch['images'][np.arange(1348) % 4 != 3]
  assert len(_rows(others)) == 1011


def test_the_labelled_share_is_of_the_global_batch_whatever_the_processes():
  # 0.25 of a global batch of 20 is 5 rows (3, 7, 11, 15, 19): 2 on the first process's
  # 10 rows and 3 on the second's. Each rounding its own 2.5 down gave 4 of 20.
  config = h.config(labels_per_class=1, labelled_fraction=0.25)
  for index, rows in ((0, [3, 7]), (1, [1, 5, 9])):
    batches = h.first_batches(config, 5, data_shape=(8, 8, 1), batch_size=10, seed=0,
                              shard_index=index, shard_count=2, labels=True)
    assert all(np.all(batch['labels'][rows] >= 0) for batch in batches), index
  # A batch holding n_critic D updates' shares: each update gets its own share
  # (rows 4, 9 of each 10), not a spread over all 20 (rows 3, 7, 11, 15, 19).
  batches = h.first_batches(config, 5, data_shape=(8, 8, 1), batch_size=20, seed=0,
                            labels=True, updates_per_batch=2)
  assert all(np.all(batch['labels'][[4, 9, 14, 19]] >= 0) for batch in batches)
  unlabelled_rows = np.concatenate([batch['labels'][[0, 1, 2, 3, 5, 6, 7, 8]]
                                    for batch in batches])
  assert np.mean(unlabelled_rows >= 0) < 0.1  # 10 of 1,347 digits are labelled


def test_a_process_may_hold_no_labelled_row_or_only_labelled_rows():
  # 0.75 of a global batch of 4 over 4 processes: rows 1, 2, 3 (spread_rows), so
  # process 0 draws only unlabelled rows and the others only labelled ones.
  config = h.config(labels_per_class=5, labelled_fraction=0.75)
  for index in range(4):
    batches = h.first_batches(config, 6, data_shape=(8, 8, 1), batch_size=1, seed=0,
                              shard_index=index, shard_count=4, labels=True)
    labels = np.concatenate([batch['labels'] for batch in batches])
    if index:
      assert np.all(labels >= 0), index
    else:  # drawn from all 336 of its digits, of which about 12 are labelled
      assert np.mean(labels >= 0) < 0.5


def test_a_state_saved_with_each_process_s_own_share_is_said_to_differ(caplog):
  # Before the share was of the global batch, the rows of a several-process (or
  # n_critic > 1) run were others: its saved position continues another stream.
  config = h.config(labels_per_class=2, labelled_fraction=0.25)
  kwargs = dict(data_shape=(8, 8, 1), batch_size=10, seed=0, shard_index=1, shard_count=2,
                labels=True)
  with data.create_train_iterator(config, **kwargs) as stream:
    state = stream.get_state()
    assert state['labelled_rows'] == 3
    del state['labelled_rows']
    with caplog.at_level(logging.WARNING):
      stream.set_state(state)
  assert "'labelled_rows': ('each process its own share', 3)" in caplog.text
  with data.create_train_iterator(config, data_shape=(8, 8, 1), batch_size=10, seed=0,
                                  labels=True) as stream:
    assert 'labelled_rows' not in stream.get_state()  # one process, one update: as before


def test_resume_with_a_labelled_fraction():
  state = h.check_resume(h.config(labels_per_class=1, labelled_fraction=0.5),
                         data_shape=(8, 8, 1), batch_size=6, skip=7, more=4, labels=True)
  assert state['labelled_fraction'] == 0.5


def test_off_labelled_fraction_leaves_the_stream_and_its_state_alone():
  plain = h.first_batches(h.config(labels_per_class=2), 3, data_shape=(8, 8, 1),
                          batch_size=8, seed=0, labels=True)
  zero = h.first_batches(h.config(labels_per_class=2, labelled_fraction=0.0), 3,
                         data_shape=(8, 8, 1), batch_size=8, seed=0, labels=True)
  for a, b in zip(plain, zero):
    np.testing.assert_array_equal(a['images'], b['images'])
    np.testing.assert_array_equal(a['labels'], b['labels'])


@pytest.mark.parametrize('fields,labels,match', [
    (dict(labels_per_class=2, labelled_fraction=1.0), True, r'in \[0, 1\)'),
    (dict(labels_per_class=2, labelled_fraction=-0.5), True, r'in \[0, 1\)'),
    (dict(labelled_fraction=0.5), False, 'needs labels'),
    (dict(labels_per_class=2, labelled_fraction=0.01), True,
     r'0 labelled rows .* Raise data.labelled_fraction or train.batch_size.$'),
    (dict(labels_per_class=2, labelled_fraction=0.99), True,
     r'8 labelled rows .* Lower data.labelled_fraction or raise train.batch_size.$'),
])
def test_bad_labelled_fractions_are_config_errors(fields, labels, match):
  with pytest.raises(errors.ConfigError, match=match):
    h.first_batches(h.config(**fields), 1, data_shape=(8, 8, 1), batch_size=8, seed=0,
                    labels=labels)


def test_labelled_mix_order_spreads_the_labelled_rows_and_walks_them_per_epoch():
  labelled = np.array([100, 105, 107])
  order = iterator.LabelledMixOrder(per_shard=200, labelled_positions=labelled, seed=3,
                                    labelled_rows=iterator.spread_rows(8, 2))
  batches = np.stack([order(k) for k in range(3)])
  # Rows 3 and 7 (floor((i + 1) * 2 / 8) steps up there); 6 rows = 2 epochs of 3.
  assert np.isin(batches[:, [3, 7]], labelled).all()
  assert sorted(batches[:, [3, 7]].ravel()) == [100, 100, 105, 105, 107, 107]
  others = batches[:, [0, 1, 2, 4, 5, 6]].ravel()
  assert len(set(others)) == 18 and others.min() >= 0 and others.max() < 200
  np.testing.assert_array_equal(order(1), batches[1])  # a pure function of k


# ---- several processes -------------------------------------------------------


def _digit_labels_by_image():
  """{bytes of an 8x8 digit's 0..16 values: its 'train' labels}, from digits.py directly."""
  images, labels = digits_lib.digits_split('train')
  table = {}
  for image, label in zip(images.astype(np.int8), labels):
    table.setdefault(image.tobytes(), set()).add(int(label))
  return table


@pytest.mark.parametrize('fields', [{}, {'train_examples': 100}, {'labels_per_class': 3},
                                    {'labels_per_class': 3, 'labelled_fraction': 0.25}])
@pytest.mark.parametrize('shard_index,shard_count', [(1, 2), (2, 3)])
def test_every_shard_keeps_each_image_with_its_label(fields, shard_index, shard_count):
  table = _digit_labels_by_image()
  with data.create_train_iterator(h.config(**fields), data_shape=(8, 8, 1), batch_size=8,
                                  seed=0, shard_index=shard_index, shard_count=shard_count,
                                  labels=True) as stream:
    batches = h.take(stream, 12)
  labelled = 0
  for batch in batches:
    # digits.py scales x in 0..16 to x / 8 - 1.
    values = np.rint((batch['images'][..., 0] + 1) * 8).astype(np.int8)
    for image, label in zip(values, batch['labels']):
      assert int(label) == -1 or int(label) in table[image.tobytes()]
      labelled += int(label) >= 0
  assert labelled >= (len(batches) * 8 if 'labels_per_class' not in fields else 1)


def test_each_process_shuffles_its_shard_in_its_own_order():
  # One order for all would draw row j of every process's batch from the same shard
  # position j: the same groups of neighbouring examples in every global batch.
  orders = [iterator.ShardOrder(per_shard=50, seed=0, batch_size=50, shard_index=i)(0)
            for i in range(2)]
  assert sorted(orders[0]) == sorted(orders[1]) == list(range(50))
  assert np.mean(orders[0] == orders[1]) < 0.2
  mixed = [iterator.LabelledMixOrder(per_shard=50, labelled_positions=np.arange(10),
                                     seed=0, labelled_rows=iterator.spread_rows(10, 5),
                                     shard_index=i)(0) for i in range(2)]
  assert not np.array_equal(mixed[0], mixed[1])
  # One process keeps the plain order of the seed (its streams and saved runs stand).
  np.testing.assert_array_equal(
      iterator.ShardOrder(per_shard=50, seed=0, batch_size=50)(0),
      np.random.default_rng([0, 0]).permutation(50))


def test_too_few_labelled_examples_for_some_process_stops_every_process():
  # 10 labelled digits over 16 processes: some processes hold none, and all must stop
  # with the same error (a process that started would wait for the others forever).
  config = h.config(labels_per_class=1, labelled_fraction=0.5)
  for index in range(16):
    with pytest.raises(errors.ConfigError, match='the process with the fewest of the 16 has '
                                                 '0 labelled examples'):
      data.create_train_iterator(config, data_shape=(8, 8, 1), batch_size=4, seed=0,
                                 shard_index=index, shard_count=16, labels=True)


def test_examples_left_out_by_sharding_are_reported(caplog):
  with caplog.at_level(logging.WARNING):
    with data.create_train_iterator(h.config(train_examples=100), data_shape=(8, 8, 1),
                                    batch_size=4, seed=0, shard_index=0, shard_count=3):
      pass
  assert any('1 of the 100 training examples are left out' in r.getMessage()
             for r in caplog.records)
