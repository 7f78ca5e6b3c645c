"""Stream codecs: lossless value coding (values.py) and the structured ANS mask coder (mask.py)."""
