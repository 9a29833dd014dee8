"""IoT Central: its REST API (apps, devices, destinations, exports, users, the query API), the
telemetry it retains and its data export."""
