"""Shared fixtures: kadmos test networks on 127.0.0.1 (one per test module), and nodes joined
to them. Every node a fixture starts is shut down by it."""

from __future__ import annotations

import pytest

import kadmos


@pytest.fixture(scope="module")
def mainline_net():
    with kadmos.Testnet(8) as net:
        yield net


@pytest.fixture(scope="module")
def opendht_net():
    with kadmos.OpenDhtTestnet(4) as net:
        yield net


@pytest.fixture
def mainline_node(mainline_net):
    """A node of its own, joined to the Mainline testnet."""
    with kadmos.Dht(bind=["127.0.0.1"], bootstrap=mainline_net.bootstrap[:1]) as node:
        node.bootstrapped()
        yield node


@pytest.fixture
def opendht_node(opendht_net):
    """A node of its own, joined to the OpenDHT testnet."""
    with kadmos.OpenDht(port=0, bind=["127.0.0.1"], bootstrap=opendht_net.bootstrap[:1], rate_limits=None) as node:
        node.bootstrapped()
        yield node
