#include "ports.h"

#include <rte_bus_vdev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "netlink_mirror.h"

namespace meshlb {

namespace {

std::string macString(const rte_ether_addr& a) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", a.addr_bytes[0], a.addr_bytes[1],
                         a.addr_bytes[2], a.addr_bytes[3], a.addr_bytes[4], a.addr_bytes[5]);
}

absl::Status configurePort(uint16_t port, uint16_t queues, rte_mempool* pool) {
  rte_eth_dev_info info{};
  if (rte_eth_dev_info_get(port, &info) != 0) {
    return absl::InternalError(absl::StrCat("port ", port, ": no device info"));
  }
  char name[RTE_ETH_NAME_MAX_LEN] = {};
  rte_eth_dev_get_name_by_port(port, name);
  if (info.max_rx_queues < queues || info.max_tx_queues < queues) {
    return absl::FailedPreconditionError(absl::StrCat(
        "port ", name, " has ", info.max_rx_queues, " RX / ", info.max_tx_queues, " TX queues; ",
        queues, " are needed (one per worker; af_packet: qpairs=", queues, ")"));
  }
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, queues, queues, &conf) != 0) {
    return absl::InternalError(absl::StrCat("port ", name, ": configure failed"));
  }
  uint16_t rxd = 1024, txd = 1024;
  rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
  for (uint16_t q = 0; q < queues; ++q) {
    if (rte_eth_rx_queue_setup(port, q, rxd, rte_eth_dev_socket_id(port), nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(port, q, txd, rte_eth_dev_socket_id(port), nullptr) != 0) {
      return absl::InternalError(absl::StrCat("port ", name, ": queue ", q, " setup failed"));
    }
  }
  if (rte_eth_dev_start(port) != 0) {
    return absl::InternalError(absl::StrCat("port ", name, ": start failed"));
  }
  rte_eth_promiscuous_enable(port);
  return absl::OkStatus();
}

absl::StatusOr<rte_ring*> makeRing(const std::string& name, unsigned flags) {
  rte_ring* r = rte_ring_create(name.c_str(), 4096, static_cast<int>(rte_socket_id()), flags);
  if (!r) return absl::InternalError(absl::StrCat("ring ", name, ": ", rte_strerror(rte_errno)));
  return r;
}

}  // namespace

absl::Status Ports::start(Dataplane& dp) {
  const uint16_t workers = dp.num_workers;
  pool_ = rte_pktmbuf_pool_create("mbufs", 16383 + 4096 * workers, 256, 0,
                                  RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
  if (!pool_) return absl::InternalError(absl::StrCat("mbuf pool: ", rte_strerror(rte_errno)));
  uint16_t pid = 0, n = 0;
  RTE_ETH_FOREACH_DEV(pid) { dp.port_ids[n++] = pid; }
  for (uint16_t i = 0; i < dp.num_ports; ++i) {
    rte_ether_addr mac{};
    rte_eth_macaddr_get(dp.port_ids[i], &mac);
    twin_ids_.push_back(0);
    twins_.emplace_back();
    std::memcpy(twins_[i].mac.data(), mac.addr_bytes, 6);
    if (auto st = makeTwin(i); !st.ok()) return st;
    if (auto st = configurePort(dp.port_ids[i], workers, pool_); !st.ok()) return st;
    auto to = makeRing(absl::StrCat("to_kernel", i), RING_F_SC_DEQ);
    auto from = makeRing(absl::StrCat("from_kernel", i), RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!to.ok()) return to.status();
    if (!from.ok()) return from.status();
    dp.to_kernel[i] = *to;
    dp.from_kernel[i] = *from;
  }
  for (uint16_t w = 0; w < workers; ++w) {
    auto r = makeRing(absl::StrCat("handoff", w), RING_F_SC_DEQ);
    if (!r.ok()) return r.status();
    dp.handoff[w] = *r;
  }
  return absl::OkStatus();
}

// net_tap lbN with port N's MAC; its kernel interface goes when the port is closed.
absl::Status Ports::makeTwin(uint16_t i) {
  rte_ether_addr mac;
  std::memcpy(mac.addr_bytes, twins_[i].mac.data(), 6);
  const std::string vdev = absl::StrCat("net_tap_lb", i);
  const std::string args = absl::StrCat("iface=lb", i, ",mac=", macString(mac));
  if (rte_vdev_init(vdev.c_str(), args.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("kernel twin lb", i, " (", vdev, " ", args, ") could not be created"));
  }
  uint16_t tap;
  if (rte_eth_dev_get_port_by_name(vdev.c_str(), &tap) != 0) {
    return absl::InternalError("twin port not found");
  }
  twin_ids_[i] = tap;
  twins_[i].ifindex = NetlinkMirror::ifindexOf(absl::StrCat("lb", i));
  return configurePort(tap, 1, pool_);
}

std::vector<uint16_t> Ports::missingTwins() const {
  std::vector<uint16_t> out;
  for (uint16_t i = 0; i < twins_.size(); ++i) {
    if (NetlinkMirror::ifindexOf(absl::StrCat("lb", i)) != twins_[i].ifindex) out.push_back(i);
  }
  return out;
}

absl::Status Ports::recreateTwin(uint16_t i) {
  pause_.store(true);
  while (twin_run_.load() && !paused_.load()) std::this_thread::yield();
  rte_eth_dev_stop(twin_ids_[i]);
  rte_eth_dev_close(twin_ids_[i]);
  rte_vdev_uninit(absl::StrCat("net_tap_lb", i).c_str());
  ++cc_.twins_recreated;
  absl::Status st = makeTwin(i);
  pause_.store(false);
  return st;
}

void Ports::startTwinThread(Dataplane& dp) {
  twin_run_.store(true);
  twin_thread_ = std::thread([this, &dp] { twinLoop(dp); });
}

void Ports::twinLoop(Dataplane& dp) {
  while (twin_run_.load(std::memory_order_relaxed)) {
    if (pause_.load(std::memory_order_acquire)) {
      paused_.store(true, std::memory_order_release);
      while (pause_.load(std::memory_order_acquire) && twin_run_.load()) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      paused_.store(false, std::memory_order_release);
      continue;
    }
    if (!forwardTwins(dp)) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

bool Ports::forwardTwins(Dataplane& dp) {
  bool busy = false;
  rte_mbuf* pkts[kRxBurst];
  for (uint16_t i = 0; i < dp.num_ports; ++i) {
    const uint16_t n = rte_eth_rx_burst(twin_ids_[i], 0, pkts, kRxBurst);
    if (n) {
      busy = true;
      const unsigned q =
          rte_ring_enqueue_burst(dp.from_kernel[i], reinterpret_cast<void**>(pkts), n, nullptr);
      if (q < n) {
        cc_.from_kernel_ring_full += n - q;
        rte_pktmbuf_free_bulk(pkts + q, n - q);
      }
    }
    const unsigned k =
        rte_ring_dequeue_burst(dp.to_kernel[i], reinterpret_cast<void**>(pkts), kRxBurst, nullptr);
    if (k) {
      busy = true;
      const uint16_t sent = rte_eth_tx_burst(twin_ids_[i], 0, pkts, static_cast<uint16_t>(k));
      if (sent < k) {
        cc_.twin_tx_full += k - sent;
        rte_pktmbuf_free_bulk(pkts + sent, k - sent);
      }
    }
  }
  return busy;
}

void Ports::stop(const Dataplane& dp) {
  twin_run_.store(false);
  if (twin_thread_.joinable()) twin_thread_.join();
  for (uint16_t i = 0; i < dp.num_ports; ++i) {
    rte_eth_dev_stop(dp.port_ids[i]);
    rte_eth_dev_close(dp.port_ids[i]);
    if (i < twin_ids_.size()) {
      rte_eth_dev_stop(twin_ids_[i]);
      rte_eth_dev_close(twin_ids_[i]);
    }
  }
}

std::string Ports::portName(uint16_t port_id) const {
  char name[RTE_ETH_NAME_MAX_LEN] = {};
  rte_eth_dev_get_name_by_port(port_id, name);
  return name;
}

}  // namespace meshlb
