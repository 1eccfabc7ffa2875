//! `gpx_kindling`: the Kindling datasource's backend, started by Grafana (go-plugin protocol).
use kindling_plugin_backend::grafana::KindlingPlugin;

#[grafana_plugin_sdk::main(services(data, diagnostics, resource), init_subscriber = true)]
async fn plugin() -> KindlingPlugin {
    KindlingPlugin::default()
}
