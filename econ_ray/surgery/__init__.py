"""Model surgery: post-hoc pruning scores (``scores``), masks that make the pruning visible to the
runtime and to effective FLOPs (``masks``), and physical removal of heads and FFN neurons into a
smaller Hugging Face model (``physical``)."""
