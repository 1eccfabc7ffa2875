-- Table: errors per endpoint and status.
SELECT resource, status, count(*) AS errors
FROM calls WHERE $__timeFilter(ts) AND is_error
GROUP BY resource, status ORDER BY errors DESC LIMIT 50
