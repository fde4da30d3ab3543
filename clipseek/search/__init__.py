"""Answering a search: the request and its filters, ranking in SQL, example pictures, the
relevance cutoff, evaluation against captions, and showing results."""

from clipseek.search.query import SearchRequest, parse_request
from clipseek.search.run import SearchPage, run_search, similar_images

__all__ = ["SearchPage", "SearchRequest", "parse_request", "run_search", "similar_images"]
