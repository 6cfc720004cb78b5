// edgestream: Beam's gRPC servers of Flink's Python functions, on loopback.
//
// Flink's Python operators talk to their Python workers through gRPC servers that the Beam
// runner code inside flink-python creates with ServerFactory.createDefault(). Its
// InetSocketAddressServerFactory asks for the loopback address but builds the server with
// NettyServerBuilder.forPort(port), which binds every interface: six anonymous control,
// data, state, logging, provisioning and artifact servers open to the network (seen with
// `ss -ltn` under `edgestream up`). The class below is the same factory that binds the
// address it asks for (NettyServerBuilder.forAddress). Only its class file,
// ServerFactory$InetSocketAddressServerFactory.class, is shipped (edgestream.cloud.jvm
// .loopback_jar, a jar in the Flink lib/ folder, ahead of flink-python on the classpath);
// the outer class here is a compile-time stand-in for flink-python's own, which stays in use
// (same nest: its factory methods call these constructors).
package org.apache.beam.sdk.fn.server;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.beam.model.pipeline.v1.Endpoints.ApiServiceDescriptor;
import org.apache.beam.sdk.fn.channel.SocketAddressFactory;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.BindableService;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.Server;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.ServerInterceptors;
import org.apache.beam.vendor.grpc.v1p60p1.io.grpc.netty.NettyServerBuilder;

/** Compile-time stand-in: flink-python's ServerFactory is the one loaded. */
public abstract class ServerFactory {
  public abstract Server allocateAddressAndCreate(
      List<BindableService> services, ApiServiceDescriptor.Builder builder) throws IOException;

  public abstract Server create(List<BindableService> services, ApiServiceDescriptor descriptor)
      throws IOException;

  public interface UrlFactory {
    String createUrl(String address, int port);
  }

  /** Binds the loopback address on a port from {@code portSupplier} (0: any free one). */
  public static class InetSocketAddressServerFactory extends ServerFactory {
    private final UrlFactory urlFactory;
    private final Supplier<Integer> portSupplier;

    private InetSocketAddressServerFactory(UrlFactory urlFactory) {
      this(urlFactory, () -> 0);
    }

    private InetSocketAddressServerFactory(UrlFactory urlFactory, Supplier<Integer> portSupplier) {
      this.urlFactory = urlFactory;
      this.portSupplier = portSupplier;
    }

    @Override
    public Server allocateAddressAndCreate(
        List<BindableService> services, ApiServiceDescriptor.Builder builder) throws IOException {
      InetSocketAddress address =
          new InetSocketAddress(InetAddress.getLoopbackAddress(), portSupplier.get());
      Server server = serve(services, address);
      builder.setUrl(urlFactory.createUrl(address.getHostName(), server.getPort()));
      return server;
    }

    @Override
    public Server create(List<BindableService> services, ApiServiceDescriptor descriptor)
        throws IOException {
      SocketAddress address = SocketAddressFactory.createFrom(descriptor.getUrl());
      if (!(address instanceof InetSocketAddress)) {
        throw new IllegalArgumentException("a host:port address is needed: " + descriptor.getUrl());
      }
      return serve(services, (InetSocketAddress) address);
    }

    private static Server serve(List<BindableService> services, InetSocketAddress address)
        throws IOException {
      NettyServerBuilder builder = NettyServerBuilder.forAddress(address)
          .maxInboundMessageSize(Integer.MAX_VALUE)
          .permitKeepAliveTime(19, TimeUnit.SECONDS);
      for (BindableService service : services) {
        builder.addService(
            ServerInterceptors.intercept(service, GrpcContextHeaderAccessorProvider.interceptor()));
      }
      return builder.build().start();
    }
  }
}
