-- Time series: calls and errors per interval.
SELECT $__timeGroup(ts, $__interval) AS time, count(*) AS calls,
       sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors
FROM calls WHERE $__timeFilter(ts)
GROUP BY 1 ORDER BY 1
