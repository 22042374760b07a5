"""The service's state: API keys, queue tickets, jobs and idempotency records.

Locally and under compose it is one SQLite database in a private ``STATE_DIR``; on AWS, the
DynamoDB table the template creates (single-table design).
"""
