-- Table: the slowest calls, with their timing phases (drilldown to one call).
SELECT ts, comm, dst_ip, dst_port, method, resource, status, duration_ns,
       request_sent_ns, waiting_ttfb_ns, content_download_ns, conn_id
FROM calls WHERE $__timeFilter(ts)
ORDER BY duration_ns DESC LIMIT 100
