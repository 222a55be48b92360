"""`train_and_evaluate(config, workdir)`: the whole training run, as one flat loop.

data iterator + state (restored or new) + compiled step -> loop -> metrics,
sample grids, evaluations and checkpoints in the workdir. Everything it uses is
built from the config here; nothing below reads flags.
"""

import collections.abc
import contextlib
import logging
import signal

from etils import epath
import jax
import ml_collections

from gan_jax import checkpoint
from gan_jax import config_check
from gan_jax import data
from gan_jax import ema as ema_lib
from gan_jax import errors
from gan_jax import metrics
from gan_jax import models
from gan_jax import parallel
from gan_jax import periodic
from gan_jax import preemption
from gan_jax import standing_stats
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from gan_jax import workdir as workdir_lib
from gan_jax import writers
from gan_jax.metrics import classifier as classifier_lib
from gan_jax.metrics import exchange


def _from_process_zero(flags):
  """Process 0's tuple of bools, on every process (so that all act alike)."""
  return tuple(bool(x) for x in parallel.from_process_zero(flags))


@contextlib.contextmanager
def _training_lock_of_every_process(workdir):
  """`workdir.training_lock`, held by process 0; a refusal stops every process.

  The other processes share process 0's folder and hold nothing themselves, but
  they must stop too (with the same one-line error) instead of waiting for process
  0 in the first collective until the heartbeat timeout.
  """
  with contextlib.ExitStack() as stack:
    refusal = None
    if jax.process_index() == 0:
      try:
        stack.enter_context(workdir_lib.training_lock(workdir))
      except errors.WorkdirError as e:
        refusal = e
    (refused,) = _from_process_zero((refusal is not None,))
    if refusal is not None:
      raise refusal
    if refused:
      raise errors.WorkdirError(
          f'Process 0 could not take the workdir {workdir} for this run (its own message '
          'says why: another training run using it, or a folder that is no place for a '
          'run).')
    yield


def _restore_or_create(config, ckpt, dp, iterator, key):
  """(state on the devices, start step): the newest readable checkpoint, else a new state."""
  target = (dp.replicated if dp.mode == 'shard_map'
            else jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  restored = ckpt.restore(state_lib.abstract_state(config, target))
  if restored is None:
    logging.info('Starting a new run in %s', ckpt.directory)
    return dp.put_state(jax.jit(lambda k: state_lib.create_state(config, k))(key)), 0
  state, data_state, step = restored
  iterator.set_state(data_state)
  logging.info('Resumed from the checkpoint at step %d in %s', step, ckpt.directory)
  return dp.put_state(state), step


def _evaluators(config, data_shape):
  """(evaluator, classifier) of `config.eval.metrics`, each None when not asked for.

  `evaluator(generate, *, seed) -> {metric: float}` computes the sample metrics;
  `classifier(state) -> float` is 'accuracy': the share of `config.eval.accuracy_split`
  that the state's discriminator classifies right (the test split is read once here).
  """
  names = metrics.parse_metrics(config.eval.metrics,
                                known=metrics.METRICS + (classifier_lib.ACCURACY,))
  if not names or config.eval.every < 0:
    return None, None
  sample_metrics = ','.join(name for name in names if name != classifier_lib.ACCURACY)
  evaluator = (metrics.make_evaluator(config, data_shape=data_shape, metrics=sample_metrics)
               if sample_metrics else None)
  if classifier_lib.ACCURACY not in names:
    return evaluator, None
  probabilities = classifier_lib.make_classifier(config)
  images, labels = classifier_lib.labelled_split(config, config.eval.accuracy_split)

  def classifier(state):
    probs = probabilities(state.d_params, state.d_batch_stats, images)
    return classifier_lib.accuracy(probs, labels)
  return evaluator, classifier


def train_and_evaluate(config, workdir, *, allow_config_change=False):
  """Trains (or resumes) a GAN in `workdir` and returns the final state.

  Args:
    config: the experiment ConfigDict (see gan_jax/defaults.py), or the plain dict
      of one (`config.to_dict()`, e.g. read back from a workdir's config.json).
    workdir: output folder (local or gs://); a run there is resumed from its
      latest readable checkpoint.
    allow_config_change: accept a changed training config when resuming (the
      change is recorded in the workdir's config_history.jsonl).

  Returns:
    The final GANState (on device).

  Raises:
    ConfigError / WorkdirError: bad config values, an incompatible workdir, or one
      that another training run is using (`workdir.training_lock`).
    periodic.NonFiniteLossError: a loss became NaN/inf (names the first bad step;
      checkpoints written before it are kept).
    preemption.Interrupted: SIGTERM / SIGINT stopped the run after a checkpoint.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    if not isinstance(config, collections.abc.Mapping):
      raise errors.ConfigError(
          'train_and_evaluate takes a config (ml_collections.ConfigDict or dict, see '
          f'gan_jax/defaults.py), got {type(config).__name__}: a config file\'s '
          'get_config() returns one, built from gan_jax.defaults.get_config().')
    config = ml_collections.ConfigDict(config)
  config_check.validate(config)
  workdir_lib.check_outside_the_data(config.data, workdir)
  t = config.train
  # The batch is checked against the devices before the workdir records anything.
  dp = parallel.DataParallel.from_config(config.parallel, remat=config.train.remat)
  config_check.check_batch_over_devices(config, dp.num_devices, jax.process_count())
  local_batch = dp.local_batch_size(t.batch_size)
  # The model's data shape and the data are checked before the workdir records
  # anything too, so a run that cannot start leaves no config.json behind.
  shape = models.data_shape(config.model)
  # Files listed, none decoded yet.
  class_names = workdir_lib.check_class_count(config) if config.model.num_classes else None
  iterator = data.create_train_iterator(
      config.data, data_shape=shape, batch_size=t.n_critic * local_batch, seed=config.seed,
      shard_index=jax.process_index(), shard_count=jax.process_count(),
      labels=config.model.num_classes > 0, updates_per_batch=t.n_critic)
  try:
    _check_same_examples_everywhere(iterator.get_state())
    with _training_lock_of_every_process(workdir):
      return _train(config, workdir, allow_config_change, dp, iterator, shape, local_batch,
                    class_names)
  finally:
    iterator.close()


def _check_same_examples_everywhere(data_state):
  """A ConfigError on every process when the processes listed other training examples
  (the `examples_sha256` of their data states differ): a host whose copy of an image
  folder has another file, or spells a name otherwise, would take its shard by index
  from another list, training on examples twice or not at all, under other labels.
  (A process that fails before this check, e.g. on a missing folder, ends alone with
  its error; the others then end at the distributed timeout, naming it.)"""
  digest = data_state.get('examples_sha256')
  if digest is None:  # toy data draws points, lists none
    return
  differing = exchange.processes_differing(digest)
  if differing:
    raise errors.ConfigError(
        f'Process(es) {differing} list other training examples than process 0 '
        f'({data_state["source"]}): every host must see the same data. Compare the hosts\' '
        'copies: the same files under the same names, spelled alike (a copy from macOS '
        'may write accented names in another Unicode form; convmv --nfc renames them), '
        'or the same TFDS version.')


def _save(ckpt, logger, writer, step, host_state, data_state):
  """Saves the checkpoint of `step`, its metrics first: when this step is a log step,
  its line reaches metrics.jsonl before its checkpoint, since a run killed later
  resumes after this step and would never log it again."""
  logger.flush()
  logger.check_finite()
  writer.flush()
  ckpt.save(step, host_state, data_state)


def _train(config, workdir, allow_config_change, dp, iterator, shape, local_batch,
           class_names):
  """train_and_evaluate's loop, in a workdir this process may write (see there)."""
  t, chief = config.train, jax.process_index() == 0
  # The evaluations' weights and references are checked before the config is
  # recorded too (a missing Inception file), and after the lock, so that a second
  # run in a busy folder is refused before they load (within the lock's 2 s wait).
  evaluator, classifier = _evaluators(config, shape)
  accepted = workdir_lib.prepare(config, workdir, allow_changes=allow_config_change,
                                 fields_not_read=config_check.fields_not_read)
  for note in config_check.late_starts(config) if chief else ():
    logging.warning('%s', note)
  if class_names is not None:
    workdir_lib.record_class_names(workdir, class_names)
  init_key, train_key, sample_key = jax.random.split(jax.random.key(config.seed), 3)
  ckpt_dir = epath.Path(workdir) / 'checkpoints'
  ckpt = checkpoint.Checkpointer(ckpt_dir, max_to_keep=t.max_to_keep)
  state, start_step = _restore_or_create(config, ckpt, dp, iterator, init_key)
  workdir_lib.record_changes(workdir, accepted, step=start_step)
  workdir_lib.record_start(workdir, step=start_step)
  step_fn = dp.compile(step_lib.make_train_step(config))
  writer = writers.MetricWriter(workdir, enabled=chief, start_step=start_step)
  grids = periodic.SampleGrids(config, workdir, writer, sample_key)
  standing_fn = None
  if evaluator is not None and config.eval.standing_stats:
    standing_fn = standing_stats.make_standing_fn(
        config.model, num_batches=config.eval.standing_stats, batch_size=t.batch_size)
  best = checkpoint.BestCheckpoint(epath.Path(workdir) / workdir_lib.BEST,
                                  resumed_from=start_step)
  # What evaluations must share to be compared (eval.* may change on resume), and
  # what each eval.jsonl line says of how its values were measured.
  protocol = summary = None
  if evaluator is not None:
    protocol = dict(evaluator.comparable, standing_stats=int(config.eval.standing_stats))
    # The latents' seed and G's compute dtype too: `gan_jax.evaluate` defaults to
    # others (seed 0; a bf16 run's G computes in bf16 in both).
    summary = dict(evaluator.summary, standing_stats=protocol['standing_stats'],
                   seed=int(config.seed), generator_dtype=str(config.model.dtype))
  logger = periodic.MetricLogger(
      dp, writer, num_steps=t.num_steps, log_every=t.log_every, start_step=start_step,
      checkpoint_dir=ckpt_dir, progress_bar=t.progress_bar)

  def put_batch(batch):
    return dp.put_batch({k: v.reshape((t.n_critic, local_batch) + v.shape[1:])
                         for k, v in batch.items()})

  def grid_due(step):
    return periodic.is_time(step, t.sample_every, t.num_steps)

  def eval_due(step):
    return ((evaluator or classifier) is not None
            and periodic.is_time(step, config.eval.every, t.num_steps))

  def evaluate(step, state, stop):
    """Scores the state and records it; a stop signal during the scoring (one process)
    raises `preemption.EvaluationStopped` before anything is written."""
    # A NaN loss since the last log step is reported as such, not as the NaN samples
    # it leads to.
    logger.flush()
    logger.check_finite()
    host_state = dp.get_state(state)
    # Said first: a long evaluation (FID of 50,000 samples) would look like a hang.
    logging.info('Evaluating step %d: %s', step, ', '.join(
        ([f'{",".join(evaluator.metrics)} of {config.eval.num_samples} samples']
         if evaluator is not None else []) + (['accuracy'] if classifier is not None else [])))
    with stop.interruptible(enabled=jax.process_count() == 1):
      results = _score(host_state, step)
    logging.info('Evaluation at step %d: %s', step,
                 ', '.join(f'{k}={v:.4g}' for k, v in results.items()))
    # The eval.jsonl line is the mark a resumed run checks, so it comes last: a run
    # killed before it evaluates this step again, and `best` too.
    best.update(step, host_state, results, protocol)
    writer.write_eval(step, results, summary)

  def _score(host_state, step):
    results = {}
    if evaluator is not None:
      sampled = host_state
      if standing_fn is not None:
        # Keyed by the step, so a resumed run evaluates with the same statistics.
        sampled = host_state.replace(g_batch_stats=standing_fn(
            host_state.ema_g_params, ema_lib.sampling_batch_stats(host_state.g_batch_stats),
            standing_stats.standing_key(config.seed, step)))
      results.update(evaluator(
          lambda z, labels=None, s=sampled: grids.generate(s, z, labels), seed=config.seed))
    if classifier is not None:
      results[classifier_lib.ACCURACY] = classifier(host_state)
    return results

  step, stopped = start_step, False
  with contextlib.ExitStack() as cleanup:
    # Entered first, so it is left last: a signal cannot abort the final save, nor the
    # closing of the checkpointer and writers (with several processes, one of them
    # leaving there would stop the others at jax.distributed's shutdown).
    stop = cleanup.enter_context(preemption.StopSignal())
    for resource in (ckpt, writer, logger):
      cleanup.callback(resource.close)
    if start_step:
      # A run killed after saving the checkpoint of `start_step` but before writing
      # that step's grid or evaluation writes them now, as the uninterrupted run did.
      missing_grid, missing_eval = _from_process_zero((
          grid_due(start_step) and chief and not grids.path(start_step).exists(),
          eval_due(start_step) and chief
          and start_step not in writers.logged_steps(epath.Path(workdir) / 'eval.jsonl')))
      if missing_grid:
        grids.write(start_step, dp.get_state(state))
      if missing_eval:
        try:
          evaluate(start_step, state, stop)
        except preemption.EvaluationStopped:
          raise preemption.Interrupted(stop.signum, start_step) from None
    prefetch = cleanup.enter_context(data.Prefetcher(iterator, put_batch, config.data.prefetch))
    for step in range(start_step + 1, t.num_steps + 1):
      batch, data_state, waited = prefetch.get()
      state, step_metrics = step_fn(state, batch, train_key)
      logger.record(step, step_metrics, waited)
      stop_now = preemption.agree(stop.received, step, t.log_every)
      saved = stop_now or periodic.is_time(step, t.checkpoint_every, t.num_steps)
      if saved:
        _save(ckpt, logger, writer, step, dp.get_state(state), data_state)
      if stop_now:
        # This step's grid and evaluation are left to the rerun, which writes them
        # first (an evaluation may outlast a preemption's grace period).
        stopped = step < t.num_steps or grid_due(step) or eval_due(step)
        break
      if grid_due(step):
        grids.write(step, dp.get_state(state))
      if eval_due(step):
        try:
          evaluate(step, state, stop)
        except preemption.EvaluationStopped:
          if not saved:
            _save(ckpt, logger, writer, step, dp.get_state(state), data_state)
          stopped = True
          break
    logger.flush()
    logger.check_finite()
    writer.flush()
    ckpt.wait()
    if stopped:  # every process stops here together, signalled or not
      raise preemption.Interrupted(stop.signum or signal.SIGTERM, step)
    stop.loop_done()
  if start_step >= t.num_steps and chief:
    logging.info('The run in %s is already at step %d >= num_steps=%d; nothing to train.',
                 workdir, start_step, t.num_steps)
  return state
