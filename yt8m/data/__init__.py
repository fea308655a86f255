"""The data layer shared by the extractor and the classifier: records, shards, vocabulary, label maps.

Nothing here imports `yt8m.extractor`, `yt8m.classifier` or `yt8m.app`.
"""
