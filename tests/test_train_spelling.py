"""train/train_spelling_head.py and the spelling it learns: letters in, letters out, and the best path
collapses as CTC does."""

import torch

from tiny_audio.ctc_decoding import LETTERS, spelling_labels
from tiny_audio.projector import AudioProjector
from train.train_spelling_head import SHAPE, greedy


def test_spelling_keeps_letters_apostrophes_and_single_spaces_and_says_digits():
    ids = spelling_labels("Don't-stop,  NOW 2.")
    assert "".join(LETTERS[i - 1] for i in ids) == "don't stop now two"
    assert 0 not in ids  # 0 is the blank


def test_head_shapes_and_greedy_collapse():
    head = AudioProjector(4, len(LETTERS) + 1, SHAPE["downsample_rate"], 8, context=SHAPE["context"])
    assert head(torch.zeros(2, 9, 4)).shape == (2, 5, len(LETTERS) + 1)  # 9 frames -> 5 positions (padded)

    # a best path (ids: 0 blank, 1 space, 2 "a", 3 "b", 4 "c"): repeats merge, a blank between two "a"s
    # keeps both; only each clip's own positions count
    path = torch.nn.functional.one_hot(torch.tensor([[3, 3, 0, 2, 0, 2, 1, 1, 4, 4]]), len(LETTERS) + 1).float()
    assert greedy(path, torch.tensor([9])) == ["baa c"]
    assert greedy(path, torch.tensor([6])) == ["baa"]
