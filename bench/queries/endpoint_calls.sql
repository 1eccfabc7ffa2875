-- Explore drilldown: the latest calls of one endpoint.
SELECT ts, comm, src_ip, dst_ip, dst_port, status, duration_ns, waiting_ttfb_ns
FROM calls WHERE $__timeFilter(ts) AND resource = '/api/v1/service7/item7'
ORDER BY ts DESC LIMIT 100
