"""Return-visit mechanism: the monthly site report for the customer (PDF and CSV).

``data`` collects one :class:`~cloud_api.compliance.report.data.SiteMonthReport`
from the store; ``pdf`` and ``csv`` render it (pure: the same value gives the
same bytes); ``period`` holds the site-time-zone month bounds every monthly
figure uses.
"""
