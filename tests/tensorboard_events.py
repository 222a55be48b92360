"""Reads a workdir's TensorBoard event files as TensorBoard shows them (for tests).

Event files are TFRecord files of `Event` protos: per record a little-endian uint64
length, its CRC, the bytes and their CRC. A resumed writer first writes a SessionLog
START event at step S, and TensorBoard then hides every
earlier-written event of step >= S: `shown` applies that rule (gan_jax's
`writers.EventFile(purge_step=S)` writes the same event).
"""

import glob
import os
import struct

from tensorboardX.proto import event_pb2


def events(workdir):
  """[(step, kind, tag, value)] of every event file of `workdir`, in writing order.

  kind is 'scalar' (value: float), 'image' (value: the PNG bytes) or 'start' (a
  resumed writer's purge mark). A record cut short by a kill ends its file.
  """
  out = []
  for path in sorted(glob.glob(os.path.join(workdir, 'tensorboard', 'events.out.tfevents.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    i = 0
    while i + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[i:i + 8])
      if i + 12 + length + 4 > len(data):
        break
      event = event_pb2.Event()
      event.ParseFromString(data[i + 12:i + 12 + length])
      i += 12 + length + 4
      if event.HasField('session_log') and event.session_log.status == event.session_log.START:
        out.append((event.step, 'start', '', None))
      elif event.HasField('summary'):
        for value in event.summary.value:
          if value.HasField('image'):
            out.append((event.step, 'image', value.tag, value.image.encoded_image_string))
          else:
            out.append((event.step, 'scalar', value.tag, value.simple_value))
  return out


def shown(workdir):
  """{(kind, tag): {step: value}}: what TensorBoard shows, purged events left out."""
  view = {}
  for step, kind, tag, value in events(workdir):
    if kind == 'start':
      for series in view.values():
        for s in [s for s in series if s >= step]:
          del series[s]
    else:
      view.setdefault((kind, tag), {})[step] = value
  return view
