"""The review queue (active learning): which live predictions are worth a human's label.

After ``/predict`` has answered, :class:`~gateway.review.service.ReviewService` looks at the
prediction in a background task (never on the request's critical path) and asks the strategies
of ``GATEWAY_REVIEW_STRATEGIES`` whether it is worth labelling:

- ``uncertain`` (:mod:`.strategies`): a box's confidence lies in a band around the threshold;
- ``rare``: a predicted class is scarce in ``data/ref_data.csv``;
- ``novel``: a box's embedding is far from every reference embedding (a subsample of
  ``ref_data.csv``, :mod:`.reference`), computed only when the embedder is available.

A picked prediction enters the queue (:mod:`.store`: rows of the store that every gateway
replica shares, images under ``data/review/images/``; survives restarts, bounded, lowest
priority evicted) if the rate limit (:mod:`.ratelimit`: one budget for all replicas, counted in
the store) has room. ``GET /review`` lists open items, ``POST /review/{id}/dismiss`` and
``POST /feedback`` with ``review_id`` close them (``gateway/routes/review.py``).
"""
