from nmt.model.seq2seq import ModelSpec, Seq2Seq, build_model

__all__ = ["ModelSpec", "Seq2Seq", "build_model"]
