#!/bin/sh
# The example component: a stand-in for the software under test.
echo "hello from the component under test"
