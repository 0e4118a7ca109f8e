"""Test-session settings shared by every test module."""

from __future__ import annotations

import torch

# The models under test are tiny: one intra-op thread avoids thread start-up and spin-waiting,
# which on a 2-core machine costs more than it gains (up to 30x on a loaded machine).
torch.set_num_threads(1)
