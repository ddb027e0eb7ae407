from setuptools import find_packages, setup

setup(
    name='lps_jax',
    version='0.1.0',
    description='Offline RL with one-step flow policies (Latent Policy Steering) in JAX/Flax.',
    packages=find_packages(include=['lps_jax', 'lps_jax.*', 'launch', 'launch.*']),
    python_requires='>=3.10',
    install_requires=[
        'jax>=0.4.30',
        'flax>=0.8',
        'optax>=0.2',
        'orbax-checkpoint>=0.5',
        'chex>=0.1.86',
        'ogbench>=1.1',
        'ml-collections>=0.1.1',
        'absl-py>=1.4',
        'numpy>=1.24',
        'matplotlib>=3.7',
        'tqdm>=4.60',
        'tensorboardX>=2.6',
    ],
    extras_require={
        'test': ['pytest>=7', 'pytest-xdist>=3'],
        # --config.task=minari:<dataset_id>; the default storage needs h5py.
        'minari': ['minari[hdf5]>=0.5'],
    },
)
