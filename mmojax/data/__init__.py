"""Data sets, tokenisation, length bucketing and resumable batching for mmojax.

Loaders return raw text (:class:`DatasetSplits`); ``encode_*`` functions turn
it into padded numpy arrays (:class:`EncodedSplit`); :class:`BatchIterator`
yields deterministic, resumable batches whose token axis is one of a few
bucket lengths, so a jitted step compiles a bounded number of times.
"""

from ._batching import BatchIterator as BatchIterator
from ._batching import epoch_permutation as epoch_permutation
from ._conll import load_conll as load_conll
from ._conll import ner_label_names as ner_label_names
from ._conll import read_conll_file as read_conll_file
from ._encode_ner import NerAlignment as NerAlignment
from ._encode_ner import encode_ner as encode_ner
from ._encode_ner import ner_predictions_to_tags as ner_predictions_to_tags
from ._encode_qa import QASpans as QASpans
from ._encode_qa import decode_qa_span as decode_qa_span
from ._encode_qa import encode_qa as encode_qa
from ._encode_qa import qa_predictions_from_logits as qa_predictions_from_logits
from ._encode_text import encode_classification as encode_classification
from ._encoded import DEFAULT_BUCKETS as DEFAULT_BUCKETS
from ._encoded import DEFAULT_QA_BUCKETS as DEFAULT_QA_BUCKETS
from ._encoded import IGNORE_INDEX as IGNORE_INDEX
from ._encoded import EncodedSplit as EncodedSplit
from ._encoded import bucket_for_length as bucket_for_length
from ._errors import DataError as DataError
from ._frame import TokenFrame as TokenFrame
from ._frame import for_pretokenized as for_pretokenized
from ._frame import load_checkpoint_tokenizer as load_checkpoint_tokenizer
from ._frame import token_frame as token_frame
from ._ner_metrics import EntityScores as EntityScores
from ._ner_metrics import entity_f1 as entity_f1
from ._ner_metrics import extract_entities as extract_entities
from ._paired import PairedAlignment as PairedAlignment
from ._paired import is_paired as is_paired
from ._paired import model_batch as model_batch
from ._paired import model_split as model_split
from ._paired import pair_splits as pair_splits
from ._sources import load_splits as load_splits
from ._squad import load_squad as load_squad
from ._squad import read_squad_file as read_squad_file
from ._squad_metrics import normalize_answer as normalize_answer
from ._squad_metrics import squad_exact_match_and_f1 as squad_exact_match_and_f1
from ._sst2 import load_sst2 as load_sst2
from ._sst2 import read_glue_tsv as read_glue_tsv
from ._synthetic import make_synthetic_sentiment as make_synthetic_sentiment
from ._tokenizer import SpecialTokenIds as SpecialTokenIds
from ._tokenizer import load_tokenizer as load_tokenizer
from ._tokenizer import save_tokenizer as save_tokenizer
from ._tokenizer import special_token_ids as special_token_ids
from ._tokenizer import train_tokenizer as train_tokenizer
from ._types import DatasetSplits as DatasetSplits
from ._types import QAExample as QAExample
from ._types import TaggingSplit as TaggingSplit
from ._types import TextClassificationSplit as TextClassificationSplit

__all__ = [
    "pair_splits",
    "model_split",
    "model_batch",
    "is_paired",
    "PairedAlignment",
    "token_frame",
    "load_checkpoint_tokenizer",
    "for_pretokenized",
    "TokenFrame",
    "DEFAULT_BUCKETS",
    "DEFAULT_QA_BUCKETS",
    "IGNORE_INDEX",
    "BatchIterator",
    "DataError",
    "DatasetSplits",
    "EncodedSplit",
    "EntityScores",
    "NerAlignment",
    "QAExample",
    "QASpans",
    "SpecialTokenIds",
    "TaggingSplit",
    "TextClassificationSplit",
    "bucket_for_length",
    "decode_qa_span",
    "encode_classification",
    "encode_ner",
    "encode_qa",
    "entity_f1",
    "epoch_permutation",
    "extract_entities",
    "load_conll",
    "load_splits",
    "load_squad",
    "load_sst2",
    "load_tokenizer",
    "make_synthetic_sentiment",
    "ner_label_names",
    "ner_predictions_to_tags",
    "normalize_answer",
    "qa_predictions_from_logits",
    "read_conll_file",
    "read_glue_tsv",
    "read_squad_file",
    "save_tokenizer",
    "special_token_ids",
    "squad_exact_match_and_f1",
    "train_tokenizer",
]
