"""models.eval_mode: eval inside the block, every module's own mode back afterwards, errors included."""
import pytest
import torch.nn as nn

from cifarlab.models import eval_mode


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))


def test_eval_inside_and_restored_after():
    net = _net().train()
    net[1].eval()  # a frozen batch norm (--freeze) stays in eval while the rest trains
    with eval_mode(net) as m:
        assert m is net
        assert not any(x.training for x in net.modules())
    assert net.training and net[0].training and net[2].training
    assert not net[1].training


def test_restored_when_the_block_raises():
    net = _net().train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert all(x.training for x in net.modules())


def test_an_eval_model_stays_in_eval():
    net = _net().eval()
    with eval_mode(net):
        pass
    assert not any(x.training for x in net.modules())
