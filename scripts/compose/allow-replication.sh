#!/bin/sh
# Run once by the official PostgreSQL image when it creates the database (it runs every file in
# /docker-entrypoint-initdb.d): lets the streaming replica of the "replica" profile copy and
# follow the primary over the compose network, with the superuser's password.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
