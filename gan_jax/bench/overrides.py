"""`--set=FIELD=VALUE` config overrides for the benchmark harnesses.

A benchmark compares configs by name (`--configs=dcgan_digits:few,...`); an
override changes one field of every config it runs, so a probe such as "the
shipped semi-supervised config with the unsupervised loss at weight 2" is one
command a reader can rerun instead of a private script:

  python -m gan_jax.bench.semi_supervised --seeds=20,21 \\
      --set=loss.d_adversarial_weight=2

The text after '=' is converted to the field's type (bool: true/false/1/0, and
yes/no, which `python -m gan_jax.main --config.FIELD=VALUE` does not take; int;
float; str as written); the train-time checks (`gan_jax.config_check`) still judge
the value. Fields a harness sets itself for each trial (the seed, the step count,
the data subset) are refused, naming the flag that sets them: a table must not
say a value ran that the harness replaced.
"""

import hashlib

import ml_collections

from gan_jax import errors

_TRUE, _FALSE = ('true', '1', 'yes'), ('false', '0', 'no')


def parse(texts, *, controlled=None):
  """Parses override flags.

  Args:
    texts: iterable of 'section.field=value' strings (None = no overrides).
    controlled: {dotted field: what to do instead, e.g. 'pass --num_steps'} for the
      fields the harness sets itself in every trial (after the overrides).

  Returns:
    tuple of (dotted field name, value text) pairs, in the order given.

  Raises:
    ConfigError: a text without '=', with an empty field name, a field named twice,
      or a field in `controlled`.
  """
  pairs, seen = [], set()
  for text in texts or ():
    field, has_value, value = str(text).partition('=')
    field = field.strip()
    if not has_value or not field:
      raise errors.ConfigError(
          f'--set wants FIELD=VALUE, e.g. --set=loss.d_adversarial_weight=2; got {text!r}.')
    if field in (controlled or {}):
      raise errors.ConfigError(
          f'--set {field}: this benchmark sets {field} itself in every trial, so the value '
          f'would not be used; {controlled[field]}.')
    if field in seen:
      raise errors.ConfigError(f'--set names {field} twice; give each field once.')
    seen.add(field)
    pairs.append((field, value.strip()))
  return tuple(pairs)


def _convert(text, current, field):
  """`text` as a value of the type of `current` (the field's present value)."""
  if isinstance(current, bool):
    if text.lower() in _TRUE:
      return True
    if text.lower() in _FALSE:
      return False
    raise errors.ConfigError(f'--set {field}={text}: {field} is a bool; use true or false.')
  for kind, name in ((int, 'an integer'), (float, 'a number')):
    if isinstance(current, kind):
      try:
        return kind(text)
      except ValueError:
        raise errors.ConfigError(
            f'--set {field}={text}: {field} is {name} (now {current!r}).') from None
  if current is None or isinstance(current, str):
    return text
  raise errors.ConfigError(
      f'--set {field}: fields of type {type(current).__name__} cannot be set from text.')


def apply(config, overrides):
  """Sets every overridden field of `config` in place.

  Args:
    config: an ml_collections.ConfigDict (a loaded config).
    overrides: pairs from `parse`.

  Returns:
    `config`, for chaining.

  Raises:
    ConfigError: a field the config does not have (naming the fields of the
      deepest section that exists) or a value not of the field's type.
  """
  for field, text in overrides:
    node, parts = config, field.split('.')
    for depth, part in enumerate(parts):
      known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      if part not in known:
        section = '.'.join(parts[:depth]) or 'the config'
        raise errors.ConfigError(
            f'--set {field}: {section} has no field {part!r}; its fields: '
            f'{", ".join(known) or "none (it is a value, not a section)"}.')
      if depth < len(parts) - 1:
        node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
      raise errors.ConfigError(f'--set {field}: that is a section; name one of its fields.')
    node[parts[-1]] = _convert(text, current, field)
  return config


# What every trial harness sets itself.
SEED_AND_STEPS = {'seed': 'pass --first_seed (and --trials)',
                  'train.num_steps': 'pass --num_steps'}


def describe(overrides):
  """'loss.a=1 model.b=x' for the overrides, '' for none (tables and logs)."""
  return ' '.join(f'{field}={text}' for field, text in overrides)


def row_label(row):
  """A benchmark row's Markdown label: '`spec`', or '`spec` with `field=value ...`'
  for a row run with overrides (`row['overrides']`, from `describe`)."""
  extra = row.get('overrides', '')
  return f"`{row['config']}`" + (f' with `{extra}`' if extra else '')


def slug(overrides):
  """A short, stable folder-name tag for the overrides ('' for none): runs kept in
  workdirs with different overrides must not resume each other."""
  if not overrides:
    return ''
  return '-set' + hashlib.sha1(describe(overrides).encode()).hexdigest()[:8]
