/*
 * Starts ONE real Elasticsearch node in this JVM, for development and tests of esdetect.
 *
 * Why this exists: the official distribution (tarball, Docker image) cannot be downloaded on the project's
 * machines, but the server jar, its libraries and the transport-netty4 module are on Maven Central.
 * scripts/elasticsearch.sh lays those jars out as an Elasticsearch home and runs this file in source mode
 * (`java --module-path HOME/lib --add-modules ALL-MODULE-PATH EsNode.java ...`, no compile step). The server
 * must be on the module path: its plugin loader builds module layers on top of the named server module.
 *
 * What is different from `bin/elasticsearch`: no CLI process, no keystore, no security manager or
 * entitlements, no bootstrap checks (the node binds to 127.0.0.1 only). Everything a request touches —
 * REST layer, mappings, Lucene, search, PIT — is the unmodified server code.
 *
 * Usage: EsNode HOME HTTP_PORT_RANGE URL_FILE
 *   HOME            Elasticsearch home laid out by the script (lib/, modules/, plugins/, config/)
 *   HTTP_PORT_RANGE e.g. 9200-9299: the first free port is taken
 *   URL_FILE        written with http://127.0.0.1:PORT once the HTTP layer is bound
 */

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.common.transport.TransportAddress;
import org.elasticsearch.env.Environment;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.PluginsLoader;

public class EsNode {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: EsNode HOME HTTP_PORT_RANGE URL_FILE");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        String httpPorts = args[1];
        Path urlFile = Path.of(args[2]).toAbsolutePath();

        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "esdetect-dev")
            .put("node.name", "esdetect-dev-node")
            // Loopback only: this is an unauthenticated development node.
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPorts)
            .put("transport.port", "9300-9399")
            .put("discovery.type", "single-node")
            // Tests create and delete many small indices; keep the disk watermarks from blocking writes on
            // a nearly full developer disk.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.destructive_requires_name", false)
            .build();

        Environment env = new Environment(settings, home.resolve("config"));
        Files.createDirectories(env.logsDir());
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName("esdetect-dev-node");
        LogConfigurator.configure(env, true);

        PluginsLoader plugins = PluginsLoader.createPluginsLoader(
            PluginsLoader.loadModulesBundles(env.modulesDir()),
            PluginsLoader.loadPluginsBundles(env.pluginsDir()),
            Map.of()
        );
        Node node = new Node(env, plugins);
        CountDownLatch closed = new CountDownLatch(1);
        // SIGTERM (scripts/elasticsearch.sh stop) closes the node cleanly so the data directory stays usable.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                closed.countDown();
            }
        }, "esdetect-dev-node-shutdown"));
        node.start();

        TransportAddress bound = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress();
        String url = "http://127.0.0.1:" + bound.getPort();
        Path tmp = urlFile.resolveSibling(urlFile.getFileName() + ".tmp");
        Files.writeString(tmp, url + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, urlFile, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        System.out.println("esdetect dev node: HTTP bound at " + url);
        closed.await();
    }
}
